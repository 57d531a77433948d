using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text;
using Npgsql;

namespace Crm.TestSupport;

/// <summary>
/// The real PostgreSQL, RabbitMQ and Redis that scripts/infra.sh started (its .local/infra.env is
/// exported by the Makefile). Each test fixture takes its own database, virtual host and key prefix.
/// </summary>
public static class TestServers
{
    public static string Postgres => Require("CRM_POSTGRES");
    public static string RabbitMq => Require("CRM_RABBITMQ");
    public static string RabbitMqManagement => Require("CRM_RABBITMQ_MGMT");
    public static string Redis => Require("CRM_REDIS");

    private static string Require(string name) =>
        Environment.GetEnvironmentVariable(name) is { Length: > 0 } v
            ? v
            : throw new InvalidOperationException($"{name} is not set: run the tests with `make test` (it starts the servers and exports their addresses).");

    public static string UniqueName(string prefix) => $"{prefix}_{Guid.NewGuid():N}"[..Math.Min(prefix.Length + 33, 63)];

    /// <summary>Creates an empty database and returns its connection string.</summary>
    public static async Task<string> CreateDatabaseAsync(string name)
    {
        await using var conn = new NpgsqlConnection(Postgres);
        await conn.OpenAsync();
        await using (var cmd = new NpgsqlCommand($"CREATE DATABASE \"{name}\"", conn)) await cmd.ExecuteNonQueryAsync();
        return new NpgsqlConnectionStringBuilder(Postgres) { Database = name }.ConnectionString;
    }

    /// <summary>The login role services run as in tests: no superuser, no BYPASSRLS, owns no table.</summary>
    public const string AppRole = "crm_app";

    /// <summary>
    /// A service's settings as production has them: a ConnectionStrings:Postgres given alone is the database
    /// owner's (from <see cref="CreateDatabaseAsync"/>), so the service migrates as that owner and runs as
    /// <see cref="AppRole"/>, which row-level security binds. Settings that name both are returned as they are.
    /// Every way tests and benchmarks start a service goes through this.
    /// </summary>
    public static async Task<Dictionary<string, string?>> AsAppRoleAsync(IEnumerable<KeyValuePair<string, string?>> settings)
    {
        var all = new Dictionary<string, string?>(settings);
        if (all.TryGetValue("ConnectionStrings:Postgres", out var owner) && owner is not null && !all.ContainsKey("ConnectionStrings:PostgresMigrations"))
        {
            await EnsureAppRoleAsync();
            all["ConnectionStrings:Postgres"] = AppConnectionString(owner);
            all["ConnectionStrings:PostgresMigrations"] = owner;
        }
        return all;
    }

    public static string AppConnectionString(string ownerConnectionString) =>
        new NpgsqlConnectionStringBuilder(ownerConnectionString) { Username = AppRole, Password = null }.ConnectionString;

    private static async Task EnsureAppRoleAsync()
    {
        await using var conn = new NpgsqlConnection(Postgres);
        await conn.OpenAsync();
        await using var cmd = new NpgsqlCommand($"""
            DO $$ BEGIN
                CREATE ROLE {AppRole} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
            EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
            END $$
            """, conn);
        await cmd.ExecuteNonQueryAsync();
    }

    public static async Task DropDatabaseAsync(string name)
    {
        NpgsqlConnection.ClearAllPools();
        await using var conn = new NpgsqlConnection(Postgres);
        await conn.OpenAsync();
        await using var cmd = new NpgsqlCommand($"DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)", conn);
        await cmd.ExecuteNonQueryAsync();
    }

    /// <summary>Creates a RabbitMQ virtual host (management API) and returns the AMQP URI into it.</summary>
    public static async Task<string> CreateVirtualHostAsync(string name)
    {
        using var http = Management();
        (await http.PutAsync($"api/vhosts/{name}", new StringContent("{}", Encoding.UTF8, "application/json"))).EnsureSuccessStatusCode();
        var user = new Uri(RabbitMq).UserInfo.Split(':')[0];
        (await http.PutAsync($"api/permissions/{name}/{user}",
            new StringContent("""{"configure":".*","write":".*","read":".*"}""", Encoding.UTF8, "application/json"))).EnsureSuccessStatusCode();
        return new UriBuilder(RabbitMq) { Path = "/" + name }.Uri.ToString();
    }

    public static async Task DeleteVirtualHostAsync(string name)
    {
        using var http = Management();
        await http.DeleteAsync($"api/vhosts/{name}");
    }

    private static HttpClient Management()
    {
        var uri = new Uri(RabbitMqManagement);
        var http = new HttpClient { BaseAddress = new Uri($"{uri.Scheme}://{uri.Host}:{uri.Port}/") };
        if (uri.UserInfo.Length > 0)
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic",
                Convert.ToBase64String(Encoding.UTF8.GetBytes(Uri.UnescapeDataString(uri.UserInfo))));
        return http;
    }

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
