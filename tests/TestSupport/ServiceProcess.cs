using System.Diagnostics;
using Crm.BuildingBlocks.Tenancy;
using Grpc.Core;
using Grpc.Net.Client;

namespace Crm.TestSupport;

/// <summary>
/// A service's built dll run as a child process (<c>dotnet services/X/bin/&lt;Configuration&gt;/net10.0/Crm.X.dll</c>),
/// configured through environment variables (<c>ConnectionStrings__Postgres</c>, ...), for tests that kill it:
/// <see cref="Kill"/> is SIGKILL on Linux, with no chance to finish anything. <see cref="ServiceHost"/> runs a
/// service in-process instead. The process's output goes to a log file, shown when it fails to start.
/// </summary>
public sealed class ServiceProcess : IAsyncDisposable
{
    private readonly Process _process;

    private ServiceProcess(Process process, string log, int grpcPort, int httpPort)
    {
        _process = process;
        LogFile = log;
        GrpcPort = grpcPort;
        HttpPort = httpPort;
        GrpcAddress = new Uri($"http://127.0.0.1:{grpcPort}");
        HttpAddress = new Uri($"http://127.0.0.1:{httpPort}");
        Channel = GrpcChannel.ForAddress(GrpcAddress);
        Tokens = new IdentityTokens(new TenancyOptions { SigningKey = ServiceHost.SigningKey });
    }

    public int GrpcPort { get; }
    public int HttpPort { get; }
    public Uri GrpcAddress { get; }
    public Uri HttpAddress { get; }
    public GrpcChannel Channel { get; }
    public IdentityTokens Tokens { get; }
    public string LogFile { get; }
    public int Id => _process.Id;
    public bool HasExited => _process.HasExited;

    /// <summary>The dll a service's own build wrote, in the configuration this test was built in (Release or Debug).</summary>
    public static string ServiceDll(string service, string assembly)
    {
        var configuration = AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Debug{Path.DirectorySeparatorChar}", StringComparison.Ordinal)
            ? "Debug" : "Release";
        var dll = Path.Combine(RepositoryRoot(), "services", service, "bin", configuration, "net10.0", assembly + ".dll");
        return File.Exists(dll) ? dll : throw new FileNotFoundException($"{dll} is not built (the test project references the service, so building the test builds it)", dll);
    }

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Crm.Platform.sln"))) return dir.FullName;
        throw new InvalidOperationException($"No Crm.Platform.sln above {AppContext.BaseDirectory}");
    }

    /// <summary>Starts the dll and waits until /health/ready answers 200 (its servers reachable, its bus started).</summary>
    /// <param name="settings">Configuration keys as in appsettings ("ConnectionStrings:Postgres"), passed as environment variables.</param>
    /// <param name="grpcPort">0: a free port; a restart passes the ports of the process it replaces.</param>
    public static async Task<ServiceProcess> StartAsync(string dll, IReadOnlyDictionary<string, string?> settings, string logFile,
        int grpcPort = 0, int httpPort = 0, TimeSpan? readyWithin = null)
    {
        grpcPort = grpcPort == 0 ? TestServers.FreePort() : grpcPort;
        httpPort = httpPort == 0 ? TestServers.FreePort() : httpPort;
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add(dll);
        var all = new Dictionary<string, string?>(settings)
        {
            ["Kestrel:Endpoints:Grpc:Url"] = $"http://127.0.0.1:{grpcPort}",
            ["Kestrel:Endpoints:Http:Url"] = $"http://127.0.0.1:{httpPort}",
            ["Tenancy:SigningKey"] = ServiceHost.SigningKey,
        };
        all.TryAdd("Logging:LogLevel:Default", "Warning");
        foreach (var (key, value) in all) info.Environment[key.Replace(":", "__", StringComparison.Ordinal)] = value;

        var log = new StreamWriter(logFile, append: true) { AutoFlush = true };
        await log.WriteLineAsync($"--- {DateTime.UtcNow:O} starting {dll}");
        var process = new Process { StartInfo = info, EnableRaisingEvents = true };
        void Write(string? line)
        {
            if (line is null) return;
            lock (log) log.WriteLine(line);
        }
        process.OutputDataReceived += (_, e) => Write(e.Data);
        process.ErrorDataReceived += (_, e) => Write(e.Data);
        process.Exited += (_, _) => { lock (log) log.Dispose(); };
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();

        var started = new ServiceProcess(process, logFile, grpcPort, httpPort);
        using var http = new HttpClient { BaseAddress = started.HttpAddress, Timeout = TimeSpan.FromSeconds(5) };
        var deadline = DateTime.UtcNow + (readyWithin ?? TimeSpan.FromSeconds(90));
        while (true)
        {
            if (process.HasExited)
                throw new InvalidOperationException($"{dll} exited with {process.ExitCode} while starting:\n{Tail(logFile)}");
            try
            {
                using var response = await http.GetAsync("health/ready");
                if (response.IsSuccessStatusCode) return started;
            }
            catch (HttpRequestException) { }
            catch (TaskCanceledException) { }
            if (DateTime.UtcNow > deadline)
            {
                started.Kill();
                throw new TimeoutException($"{dll} was not ready within {readyWithin ?? TimeSpan.FromSeconds(90)}:\n{Tail(logFile)}");
            }
            await Task.Delay(100);
        }
    }

    /// <summary>SIGKILL: the process stops at once, in whatever it was doing.</summary>
    public void Kill()
    {
        if (_process.HasExited) return;
        _process.Kill();
        _process.WaitForExit();
    }

    /// <summary>Call options carrying a signed identity token for the tenant.</summary>
    public CallOptions As(string tenant) =>
        new(new Metadata { { "authorization", "Bearer " + Tokens.Issue(tenant, [Scope.All]) } });

    public static string Tail(string file, int lines = 60)
    {
        try
        {
            using var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            var all = new StreamReader(stream).ReadToEnd().Split('\n');
            return string.Join('\n', all.TakeLast(lines));
        }
        catch (IOException e)
        {
            return $"(no log: {e.Message})";
        }
    }

    public ValueTask DisposeAsync()
    {
        Kill();
        Channel.Dispose();
        _process.Dispose();
        return ValueTask.CompletedTask;
    }
}
