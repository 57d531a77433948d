using System.Diagnostics;
using Npgsql;

namespace Crm.Bench;

/// <summary>Where the servers are (scripts/infra.sh's .local/infra.env) and where the built services live.</summary>
public sealed record BenchEnvironment(string Postgres, string RabbitMq, string RepoRoot, string WorkDir)
{
    public static BenchEnvironment FromEnvironment()
    {
        var root = Environment.GetEnvironmentVariable("CRM_REPO_ROOT") ?? Directory.GetCurrentDirectory();
        var work = Path.Combine(root, ".local", "bench");
        Directory.CreateDirectory(work);
        return new BenchEnvironment(
            Environment.GetEnvironmentVariable("CRM_POSTGRES") ?? throw new InvalidOperationException("CRM_POSTGRES is not set (run through make bench)"),
            Environment.GetEnvironmentVariable("CRM_RABBITMQ") ?? throw new InvalidOperationException("CRM_RABBITMQ is not set"),
            root, work);
    }

    public Task DropDatabaseAsync(string name) => Crm.TestSupport.TestServers.DropDatabaseAsync(name);

    public async Task<string> FreshDatabaseAsync(string name)
    {
        await Crm.TestSupport.TestServers.DropDatabaseAsync(name);
        return await Crm.TestSupport.TestServers.CreateDatabaseAsync(name);
    }

    /// <summary>Starts a built service (Release) as its own process, so its memory is measured alone.</summary>
    public async Task<ServiceProcess> StartServiceAsync(string assembly, IDictionary<string, string> settings)
    {
        // As in production and the tests: migrated by the database's owner, run as a role row-level security binds.
        settings = (await Crm.TestSupport.TestServers.AsAppRoleAsync(settings.Select(s => KeyValuePair.Create(s.Key, (string?)s.Value))))
            .ToDictionary(s => s.Key, s => s.Value!);
        var dll = Path.Combine(RepoRoot, "services", assembly.Replace("Crm.", "", StringComparison.Ordinal), "bin", "Release", "net10.0", assembly + ".dll");
        if (!File.Exists(dll)) throw new FileNotFoundException($"{dll} is not built; run `dotnet build -c Release` first.");
        var grpc = Crm.TestSupport.TestServers.FreePort();
        var http = Crm.TestSupport.TestServers.FreePort();
        var psi = new ProcessStartInfo("dotnet", dll) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = Path.GetDirectoryName(dll)! };
        psi.Environment["Kestrel__Endpoints__Grpc__Url"] = $"http://127.0.0.1:{grpc}";
        psi.Environment["Kestrel__Endpoints__Http__Url"] = $"http://127.0.0.1:{http}";
        psi.Environment["Logging__LogLevel__Default"] = "Warning";
        foreach (var (k, v) in settings) psi.Environment[k.Replace(":", "__", StringComparison.Ordinal)] = v;
        var process = Process.Start(psi)!;
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) Console.Error.WriteLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) Console.Error.WriteLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        using var httpClient = new HttpClient();
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (true)
        {
            try
            {
                if ((await httpClient.GetAsync($"http://127.0.0.1:{http}/health/ready")).IsSuccessStatusCode) break;
            }
            catch (HttpRequestException) { }
            if (process.HasExited || DateTime.UtcNow > deadline) throw new InvalidOperationException($"{assembly} did not become ready");
            await Task.Delay(200);
        }
        return new ServiceProcess(process, new Uri($"http://127.0.0.1:{grpc}"));
    }
}

public sealed class ServiceProcess(Process process, Uri grpcAddress) : IDisposable
{
    public Uri GrpcAddress { get; } = grpcAddress;

    /// <summary>Peak resident set size (VmHWM) of the service process, in MiB.</summary>
    public double PeakRssMiB()
    {
        foreach (var line in File.ReadLines($"/proc/{process.Id}/status"))
            if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture) / 1024.0;
        return double.NaN;
    }

    /// <summary>User + system CPU seconds the service process has used so far.</summary>
    public double CpuSeconds() => CpuOf(process.Id);

    public static double CpuOf(int pid)
    {
        var fields = File.ReadAllText($"/proc/{pid}/stat").Split(')')[1].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return (long.Parse(fields[11], System.Globalization.CultureInfo.InvariantCulture) + long.Parse(fields[12], System.Globalization.CultureInfo.InvariantCulture)) / 100.0;
    }

    /// <summary>CPU seconds of all PostgreSQL server processes.</summary>
    public static double PostgresCpuSeconds() => CpuOfCommand("postgres");

    /// <summary>
    /// CPU seconds of the PostgreSQL backends connected to one database (their process title names it): on a
    /// server shared with other work, what this benchmark's statements cost, without the others' load.
    /// </summary>
    public static double PostgresCpuSeconds(string database) => CpuOfProcesses(pid =>
        File.ReadAllText($"/proc/{pid}/comm").Trim() == "postgres"
        && File.ReadAllText($"/proc/{pid}/cmdline").Replace('\0', ' ').Split(' ', StringSplitOptions.RemoveEmptyEntries) is ["postgres:", _, var db, ..]
        && db == database);

    /// <summary>CPU seconds of all processes with that command name.</summary>
    public static double CpuOfCommand(string command) => CpuOfProcesses(pid => File.ReadAllText($"/proc/{pid}/comm").Trim() == command);

    private static double CpuOfProcesses(Func<int, bool> matches)
    {
        double total = 0;
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid)) continue;
            try
            {
                if (matches(pid)) total += CpuOf(pid);
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
        return total;
    }

    private bool _disposed;

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (!process.HasExited) process.Kill(entireProcessTree: true);
        process.WaitForExit();
        process.Dispose();
    }
}
