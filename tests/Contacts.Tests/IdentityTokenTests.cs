using System.Buffers.Text;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;
using Crm.Contacts.Tests.Infrastructure;
using Crm.Contacts.V1;
using Crm.TestSupport;
using Grpc.Core;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Options;

namespace Crm.Contacts.Tests;

/// <summary>
/// A service verifies identity tokens with public keys only: nothing it holds lets it (or anyone who
/// reads its configuration) mint a token, rotation accepts both configured keys, and a bad key
/// configuration stops it at start-up naming the setting.
/// </summary>
[Collection(ContactsCollection.Name)]
public sealed class IdentityTokenTests(ContactsFixture fx)
{
    private static readonly TestTokenKeys Configured = TestTokenKeys.Default;

    private static CallOptions Bearer(string token) => new(new Metadata { { "authorization", "Bearer " + token } });

    private static Task Accepted(ServiceHost host, string token) =>
        new WorkspaceService.WorkspaceServiceClient(host.Channel).GetWorkspaceAsync(new GetWorkspaceRequest(), Bearer(token)).ResponseAsync;

    private static Task Refused(ServiceHost host, string token) =>
        Rpc.FailsWith(StatusCode.Unauthenticated, () => Accepted(host, token));

    [Fact]
    public async Task Should_refuse_a_token_signed_with_anything_the_service_holds_or_with_an_unknown_key()
    {
        var claims = Claims();
        // The hand-made token is right when signed properly: the refusals below are for their signatures.
        await Accepted(fx.Host, Jwt(new { alg = "ES256", typ = "JWT", kid = Configured.KeyId }, claims, EcdsaSigner(Configured.PrivatePem)));

        // Algorithm confusion: HS256 with the service's public key (its PEM text, or its DER bytes) as the secret.
        var publicPem = Encoding.UTF8.GetBytes(Configured.PublicPem);
        using (var publicKey = ECDsa.Create())
        {
            publicKey.ImportFromPem(Configured.PublicPem);
            var publicDer = publicKey.ExportSubjectPublicKeyInfo();
            foreach (var secret in new[] { publicPem, publicDer })
                await Refused(fx.Host, Jwt(new { alg = "HS256", typ = "JWT", kid = Configured.KeyId }, claims, data => HMACSHA256.HashData(secret, data)));
        }

        // No signature at all.
        await Refused(fx.Host, Jwt(new { alg = "none", typ = "JWT", kid = Configured.KeyId }, claims, _ => []));

        // A key pair the service does not know, under the configured key's id and under its own.
        var stranger = TestTokenKeys.Generate(Configured.KeyId);
        await Refused(fx.Host, stranger.Issuer().Issue("t-evil", ["*"]));
        await Refused(fx.Host, TestTokenKeys.Generate("unknown-key").Issuer().Issue("t-evil", ["*"]));
        await Refused(fx.Host, Jwt(new { alg = "ES256", typ = "JWT" }, claims, EcdsaSigner(Configured.PrivatePem))); // no kid

        // The right key, but the wrong issuer, audience, times or lifetime.
        var now = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        foreach (var wrong in new[]
        {
            Claims(iss: "someone-else"),
            Claims(aud: "other-services"),
            Claims(iat: now - 3600, exp: now - 600),
            Claims(iat: now, exp: now + (long)TimeSpan.FromHours(13).TotalSeconds),
        })
            await Refused(fx.Host, Jwt(new { alg = "ES256", typ = "JWT", kid = Configured.KeyId }, wrong, EcdsaSigner(Configured.PrivatePem)));
    }

    [Fact]
    public async Task Should_accept_both_keys_during_a_rotation_and_refuse_a_removed_key()
    {
        // The next key in the shape the Helm chart generates: "EC PRIVATE KEY" and a self-signed certificate.
        var next = HelmShaped("test-key-2");
        var oldToken = Configured.Issuer().Issue("t-rotation", ["*"]);
        var newToken = next.Issuer().Issue("t-rotation", ["*"]);
        await Refused(fx.Host, newToken); // not yet configured

        await using (var rotating = await StartAsync(TestTokenKeys.PublicKeySettings(Configured, next)))
        {
            await Accepted(rotating, oldToken);
            await Accepted(rotating, newToken);
        }

        await using var rotated = await StartAsync(TestTokenKeys.PublicKeySettings(next));
        await Accepted(rotated, newToken);
        await Refused(rotated, oldToken);
    }

    [Theory]
    [InlineData(null, null, "Tenancy:PublicKeys is required")]
    [InlineData("k1", "not a pem", "Tenancy:PublicKeys:0:Pem is not PEM")]
    [InlineData("", "public", "Tenancy:PublicKeys:0:KeyId is required")]
    [InlineData("k1", "private", "Tenancy:PublicKeys:0:Pem is a private key")]
    [InlineData("k1", "p384", "Tenancy:PublicKeys:0:Pem is not a P-256")]
    [InlineData("k1", "public+signing", "Tenancy:SigningKey is set, but a service only verifies")]
    public async Task Should_stop_at_start_up_naming_the_setting_when_the_keys_are_wrong(string? keyId, string? pem, string message)
    {
        var settings = new Dictionary<string, string?>
        {
            ["ConnectionStrings:Postgres"] = fx.ConnectionString,
            ["ConnectionStrings:RabbitMq"] = fx.RabbitMqUri,
            ["Contacts:SuppressionKey"] = ServiceHost.TestSuppressionKey,
            ["Kestrel:Endpoints:Grpc:Url"] = $"http://127.0.0.1:{TestServers.FreePort()}",
            ["Kestrel:Endpoints:Http:Url"] = $"http://127.0.0.1:{TestServers.FreePort()}",
        };
        if (keyId is not null)
        {
            using var p384 = ECDsa.Create(ECCurve.NamedCurves.nistP384);
            settings["Tenancy:PublicKeys:0:KeyId"] = keyId;
            settings["Tenancy:PublicKeys:0:Pem"] = pem switch
            {
                "public" or "public+signing" => Configured.PublicPem,
                "private" => Configured.PrivatePem,
                "p384" => p384.ExportSubjectPublicKeyInfoPem(),
                _ => pem,
            };
            if (pem == "public+signing") settings["Tenancy:SigningKey"] = Configured.PrivatePem;
        }
        await using var app = ContactsModule.Build([], b => b.Configuration.AddInMemoryCollection(settings));
        var refused = await Assert.ThrowsAsync<OptionsValidationException>(() => app.StartAsync());
        Assert.Contains(message, refused.Message, StringComparison.Ordinal);
    }

    private Task<ServiceHost> StartAsync(Dictionary<string, string?> keys)
    {
        keys["ConnectionStrings:Postgres"] = fx.ConnectionString;
        keys["ConnectionStrings:RabbitMq"] = fx.RabbitMqUri;
        keys["Outbox:RelayEnabled"] = "false";
        return ServiceHost.StartAsync(ContactsModule.Build, keys);
    }

    private static TestTokenKeys HelmShaped(string keyId)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var certificate = new CertificateRequest("CN=crm-platform identity tokens", key, HashAlgorithmName.SHA256)
            .CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddYears(100));
        return new TestTokenKeys(keyId, key.ExportECPrivateKeyPem(), certificate.ExportCertificatePem());
    }

    private static Dictionary<string, object> Claims(string iss = "crm-platform", string aud = "crm-services", long? iat = null, long? exp = null)
    {
        var now = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        return new()
        {
            ["iss"] = iss, ["aud"] = aud, ["sub"] = "forger", ["tenant"] = "t-evil", ["scope"] = "*",
            ["iat"] = iat ?? now, ["nbf"] = (iat ?? now) - 5, ["exp"] = exp ?? now + 300,
        };
    }

    /// <summary>A JWS in compact form, built by hand so that it can say anything a forger would.</summary>
    private static string Jwt(object header, object payload, Func<byte[], byte[]> sign)
    {
        var signingInput = Base64Url.EncodeToString(JsonSerializer.SerializeToUtf8Bytes(header)) + "." + Base64Url.EncodeToString(JsonSerializer.SerializeToUtf8Bytes(payload));
        return signingInput + "." + Base64Url.EncodeToString(sign(Encoding.ASCII.GetBytes(signingInput)));
    }

    private static Func<byte[], byte[]> EcdsaSigner(string privatePem) => data =>
    {
        using var key = ECDsa.Create();
        key.ImportFromPem(privatePem);
        return key.SignData(data, HashAlgorithmName.SHA256, DSASignatureFormat.IeeeP1363FixedFieldConcatenation);
    };
}
