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
        Tokens = TestTokenKeys.Default.Issuer();
    }

    public int GrpcPort { get; }
    public int HttpPort { get; }
    public Uri GrpcAddress { get; }
    public Uri HttpAddress { get; }
    public GrpcChannel Channel { get; }
    public IdentityTokenIssuer Tokens { get; }
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
        var started = Launch(dll, settings, logFile, grpcPort, httpPort);
        await started.WaitUntilReadyAsync(readyWithin ?? TimeSpan.FromSeconds(90));
        return started;
    }

    /// <summary>Starts the dll without waiting for it (a test that kills it while it starts up).</summary>
    public static ServiceProcess Launch(string dll, IReadOnlyDictionary<string, string?> settings, string logFile, int grpcPort = 0, int httpPort = 0)
    {
        grpcPort = grpcPort == 0 ? TestServers.FreePort() : grpcPort;
        httpPort = httpPort == 0 ? TestServers.FreePort() : httpPort;
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add(dll);
        var all = new Dictionary<string, string?>(TestTokenKeys.PublicKeySettings(TestTokenKeys.Default));
        foreach (var (key, value) in settings) all[key] = value;
        all["Kestrel:Endpoints:Grpc:Url"] = $"http://127.0.0.1:{grpcPort}";
        all["Kestrel:Endpoints:Http:Url"] = $"http://127.0.0.1:{httpPort}";
        all = TestServers.AsAppRoleAsync(all).GetAwaiter().GetResult();
        all.TryAdd("Logging:LogLevel:Default", "Warning");
        foreach (var (key, value) in all) info.Environment[key.Replace(":", "__", StringComparison.Ordinal)] = value;

        File.AppendAllText(logFile, $"--- {DateTime.UtcNow:O} starting {dll}\n");
        var process = new Process { StartInfo = info };
        StartWithOutputTo(process, logFile);
        return new ServiceProcess(process, logFile, grpcPort, httpPort);
    }

    /// <summary>Starts a process whose output (redirected in its start info) is appended to a file, line by line.</summary>
    public static void StartWithOutputTo(Process process, string logFile)
    {
        var gate = new Lock();
        void Append(object? _, DataReceivedEventArgs e)
        {
            if (e.Data is null) return;
            lock (gate) File.AppendAllText(logFile, e.Data + "\n");
        }
        process.OutputDataReceived += Append;
        process.ErrorDataReceived += Append;
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    public async Task WaitUntilReadyAsync(TimeSpan within)
    {
        using var http = new HttpClient { BaseAddress = HttpAddress, Timeout = TimeSpan.FromSeconds(5) };
        var deadline = DateTime.UtcNow + within;
        while (true)
        {
            if (_process.HasExited)
                throw new InvalidOperationException($"The service exited with {_process.ExitCode} while starting:\n{Tail(LogFile)}");
            try
            {
                using var response = await http.GetAsync("health/ready");
                if (response.IsSuccessStatusCode) return;
            }
            catch (HttpRequestException) { }
            catch (TaskCanceledException) { }
            if (DateTime.UtcNow > deadline)
            {
                Kill();
                throw new TimeoutException($"The service was not ready within {within}:\n{Tail(LogFile)}");
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
