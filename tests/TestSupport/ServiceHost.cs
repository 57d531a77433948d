using Crm.BuildingBlocks.Tenancy;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Configuration;

namespace Crm.TestSupport;

/// <summary>A service started in-process on real loopback sockets (gRPC over h2c, health over HTTP/1.1).</summary>
public sealed class ServiceHost : IAsyncDisposable
{
    private ServiceHost(WebApplication app, int grpcPort, int httpPort)
    {
        App = app;
        GrpcAddress = new Uri($"http://127.0.0.1:{grpcPort}");
        HttpAddress = new Uri($"http://127.0.0.1:{httpPort}");
        Channel = GrpcChannel.ForAddress(GrpcAddress, new GrpcChannelOptions { MaxSendMessageSize = 16 * 1024 * 1024 });
        Tokens = TestTokenKeys.Default.Issuer();
    }

    public WebApplication App { get; }
    public Uri GrpcAddress { get; }
    public Uri HttpAddress { get; }
    public GrpcChannel Channel { get; }
    /// <summary>Signs tokens with the test issuer's key (<see cref="TestTokenKeys.Default"/>), which the services verify.</summary>
    public IdentityTokenIssuer Tokens { get; }

    /// <summary>A service: it verifies identity tokens with the test issuer's public key only (unless the settings name other keys).</summary>
    /// <param name="build">The service's own Build(args, configure), e.g. ContactsModule.Build.</param>
    /// <param name="settings">
    /// The service's configuration. A ConnectionStrings:Postgres given alone is the database owner's: the
    /// service then migrates as that owner and runs as <see cref="TestServers.AppRole"/>, as in production,
    /// so every test goes through row-level security.
    /// </param>
    public static Task<ServiceHost> StartAsync(
        Func<string[], Action<WebApplicationBuilder>, WebApplication> build, IDictionary<string, string?> settings) =>
        StartWithKeysAsync(build, settings, settings.Keys.Any(k => k.StartsWith("Tenancy:PublicKeys:", StringComparison.Ordinal))
            ? [] : TestTokenKeys.PublicKeySettings(TestTokenKeys.Default));

    /// <summary>An issuer (the gateway): it signs with the test issuer's private key.</summary>
    public static Task<ServiceHost> StartIssuerAsync(
        Func<string[], Action<WebApplicationBuilder>, WebApplication> build, IDictionary<string, string?> settings) =>
        StartWithKeysAsync(build, settings, TestTokenKeys.Default.SigningSettings());

    private static async Task<ServiceHost> StartWithKeysAsync(
        Func<string[], Action<WebApplicationBuilder>, WebApplication> build, IDictionary<string, string?> settings, Dictionary<string, string?> keys)
    {
        settings = await TestServers.AsAppRoleAsync(settings);
        var grpcPort = TestServers.FreePort();
        var httpPort = TestServers.FreePort();
        var app = build([], builder =>
        {
            var all = new Dictionary<string, string?>(keys)
            {
                ["Kestrel:Endpoints:Grpc:Url"] = $"http://127.0.0.1:{grpcPort}",
                ["Kestrel:Endpoints:Http:Url"] = $"http://127.0.0.1:{httpPort}",
                ["Logging:LogLevel:Default"] = "Warning",
                // Contacts' erased-identity key (other services ignore it).
                ["Contacts:SuppressionKey"] = TestSuppressionKey,
            };
            foreach (var (key, value) in settings) all[key] = value;
            builder.Configuration.AddInMemoryCollection(all);
        });
        await app.StartAsync();
        return new ServiceHost(app, grpcPort, httpPort);
    }

    /// <summary>A Contacts:SuppressionKey for tests (the base64 of 32 bytes), the same for every host of a test run.</summary>
    public static readonly string TestSuppressionKey = Convert.ToBase64String(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32));

    /// <summary>
    /// A gateway's settings that send the service's clusters (<c>&lt;service&gt;-http</c> for REST,
    /// <c>&lt;service&gt;-grpc</c> for gRPC, destination <c>&lt;service&gt;</c>, as in the gateway's appsettings) to this host.
    /// </summary>
    public IEnumerable<KeyValuePair<string, string?>> AsGatewayClusters(string service) =>
    [
        new($"ReverseProxy:Clusters:{service}-http:Destinations:{service}:Address", HttpAddress.ToString()),
        new($"ReverseProxy:Clusters:{service}-grpc:Destinations:{service}:Address", GrpcAddress.ToString()),
    ];

    /// <summary>Call options carrying a signed identity token for the tenant.</summary>
    public CallOptions As(string tenant, params string[] scopes) =>
        new(new Metadata { { "authorization", "Bearer " + Tokens.Issue(tenant, scopes.Length == 0 ? [Scope.All] : scopes) } });

    /// <summary>An HTTP/1.1 client of the REST endpoint, sending <c>Authorization: Bearer</c> with the credential (a token or an API key).</summary>
    public HttpClient Rest(string? credential)
    {
        var http = new HttpClient { BaseAddress = HttpAddress };
        if (credential is not null) http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", credential);
        return http;
    }

    private bool _disposed;

    public async ValueTask DisposeAsync()
    {
        if (_disposed) return;
        _disposed = true;
        Channel.Dispose();
        await App.StopAsync();
        await App.DisposeAsync();
    }
}
