using System.Diagnostics;
using System.Net.Sockets;
using Crm.TestSupport;

namespace Crm.Faults.Tests.Infrastructure;

/// <summary>
/// A RabbitMQ node of this test's own, from the installed rabbitmq-server package (as scripts/infra.sh starts
/// the shared one): its own node name, ports, data and log directories and Erlang cookie under a temporary
/// directory, so it can be stopped, killed and restarted without touching the node everyone else uses.
/// Data survives a restart (the same directories), as on a real node. No plugins: it starts in a few seconds.
/// </summary>
public sealed class PrivateRabbitMq : IAsyncDisposable
{
    private const string Bin = "/usr/lib/rabbitmq/bin";
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "crm-fault-rabbitmq-" + Guid.NewGuid().ToString("N")[..8]);
    private Process? _server;

    public PrivateRabbitMq()
    {
        Node = $"crm-fault-{Guid.NewGuid().ToString("N")[..8]}@localhost";
        Port = TestServers.FreePort();
        DistPort = TestServers.FreePort();
    }

    public string Node { get; }
    public int Port { get; }
    public int DistPort { get; }
    public string AmqpUri => $"amqp://guest:guest@127.0.0.1:{Port}/";
    public string LogFile => Path.Combine(_dir, "server.log");

    public async Task StartAsync(TimeSpan? within = null)
    {
        if (!File.Exists(Path.Combine(Bin, "rabbitmq-server")))
            throw new InvalidOperationException($"{Bin}/rabbitmq-server is missing: install the rabbitmq-server package (scripts/infra.sh up does)");
        Directory.CreateDirectory(Path.Combine(_dir, "mnesia"));
        Directory.CreateDirectory(Path.Combine(_dir, "log"));
        await File.WriteAllTextAsync(Path.Combine(_dir, "enabled_plugins"), "[].");
        await File.WriteAllTextAsync(Path.Combine(_dir, "rabbitmq-env.conf"), "");
        await File.WriteAllTextAsync(Path.Combine(_dir, "rabbitmq.conf"), "# a test's private node; guest/guest from loopback\n");
        File.Delete(PidFile);

        var info = Command(Path.Combine(Bin, "rabbitmq-server"));
        var server = new Process { StartInfo = info };
        ServiceProcess.StartWithOutputTo(server, LogFile);
        _server = server;

        // Ready when AMQP answers with a protocol header (the listener opens last in the boot).
        var deadline = DateTime.UtcNow + (within ?? TimeSpan.FromSeconds(60));
        while (!await AnswersAmqpAsync())
        {
            if (server.HasExited) throw new InvalidOperationException($"RabbitMQ node {Node} exited while starting:\n{ServiceProcess.Tail(LogFile)}");
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"RabbitMQ node {Node} did not start:\n{ServiceProcess.Tail(LogFile)}");
            await Task.Delay(200);
        }
    }

    /// <summary>A clean stop (rabbitmqctl stop): the node closes its connections and writes its state.</summary>
    public async Task StopAsync()
    {
        using var ctl = Process.Start(Command(Path.Combine(Bin, "rabbitmqctl"), "-q", "-n", Node, "stop", PidFile))!;
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await ctl.StandardOutput.ReadToEndAsync(timeout.Token);
        await ctl.WaitForExitAsync(timeout.Token);
        await WaitForExitAsync();
    }

    /// <summary>SIGKILL of the Erlang VM: no goodbye to clients, nothing flushed that was not already.</summary>
    public async Task KillAsync()
    {
        if (int.TryParse((await File.ReadAllTextAsync(PidFile)).Trim(), out var pid))
        {
            using var vm = Process.GetProcessById(pid);
            vm.Kill();
        }
        await WaitForExitAsync();
    }

    private string PidFile => Path.Combine(_dir, "rabbitmq.pid");

    private async Task WaitForExitAsync()
    {
        if (_server is null) return;
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await _server.WaitForExitAsync(timeout.Token);
        _server.Dispose();
        _server = null;
    }

    private async Task<bool> AnswersAmqpAsync()
    {
        try
        {
            using var tcp = new TcpClient();
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            await tcp.ConnectAsync("127.0.0.1", Port, timeout.Token);
            var stream = tcp.GetStream();
            await stream.WriteAsync("AMQP\0\0\x09\x01"u8.ToArray(), timeout.Token);
            var buffer = new byte[1];
            return await stream.ReadAsync(buffer, timeout.Token) == 1;
        }
        catch (Exception e) when (e is SocketException or IOException or OperationCanceledException)
        {
            return false;
        }
    }

    private ProcessStartInfo Command(string file, params string[] args)
    {
        var info = new ProcessStartInfo(file)
        {
            UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = _dir,
        };
        foreach (var a in args) info.ArgumentList.Add(a);
        var env = info.Environment;
        env["HOME"] = _dir; // where the Erlang cookie lives: server and rabbitmqctl share it
        env["RABBITMQ_NODENAME"] = Node;
        env["RABBITMQ_NODE_IP_ADDRESS"] = "127.0.0.1";
        env["RABBITMQ_NODE_PORT"] = Port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        env["RABBITMQ_DIST_PORT"] = DistPort.ToString(System.Globalization.CultureInfo.InvariantCulture);
        env["RABBITMQ_MNESIA_BASE"] = Path.Combine(_dir, "mnesia");
        env["RABBITMQ_LOG_BASE"] = Path.Combine(_dir, "log");
        env["RABBITMQ_PID_FILE"] = PidFile;
        env["RABBITMQ_CONFIG_FILE"] = Path.Combine(_dir, "rabbitmq.conf");
        env["RABBITMQ_ADVANCED_CONFIG_FILE"] = Path.Combine(_dir, "advanced.config");
        env["RABBITMQ_CONF_ENV_FILE"] = Path.Combine(_dir, "rabbitmq-env.conf");
        env["RABBITMQ_ENABLED_PLUGINS_FILE"] = Path.Combine(_dir, "enabled_plugins");
        env["ERL_EPMD_ADDRESS"] = "127.0.0.1";
        env["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"] = "-kernel inet_dist_use_interface {127,0,0,1}";
        return info;
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (_server is { HasExited: false }) await KillAsync();
        }
        finally
        {
            try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
        }
    }
}
