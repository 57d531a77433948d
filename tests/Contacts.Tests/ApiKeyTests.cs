using Crm.BuildingBlocks.Tenancy;
using Crm.Contacts.Tests.Infrastructure;
using Crm.Contacts.V1;
using Google.Rpc;
using Grpc.Core;

namespace Crm.Contacts.Tests;

[Collection(ContactsCollection.Name)]
public sealed class ApiKeyTests(ContactsFixture fx)
{
    [Fact]
    public async Task Should_grant_a_key_no_more_than_its_creator_has_and_resolve_it_only_for_the_gateway()
    {
        var t = ContactsFixture.NewTenant();
        var admin = fx.As(t, Scope.WorkspaceAdmin, Scope.ContactsRead);

        var tooMuch = await Rpc.FailsWith(StatusCode.InvalidArgument, () => fx.Workspaces.CreateApiKeyAsync(
            new CreateApiKeyRequest { Name = "k", Scopes = { Scope.DeliverySend, Scope.ApiKeysVerify } }, admin).ResponseAsync);
        var violations = tooMuch!.GetDetail<Google.Rpc.BadRequest>()!.FieldViolations;
        Assert.All(violations, v => Assert.Equal("scopes", v.Field));
        Assert.Contains(violations, v => v.Description.Contains("'delivery.send' is more than the caller has", StringComparison.Ordinal));
        Assert.Contains(violations, v => v.Description.Contains("'apikeys.verify' is not a scope a key can have", StringComparison.Ordinal));

        var created = await fx.Workspaces.CreateApiKeyAsync(new CreateApiKeyRequest { Name = "reader", Scopes = { Scope.ContactsRead } }, admin);
        Assert.Matches("^crm_[0-9a-f]{32}_[A-Za-z0-9_-]{43}$", created.Secret);
        Assert.Equal([Scope.ContactsRead], created.Key.Scopes);

        // Resolving keys crosses workspaces: only the gateway's explicit scope, not "*".
        var request = new AuthenticateApiKeyRequest { Key = created.Secret };
        await Rpc.FailsWith(StatusCode.PermissionDenied, () => fx.Workspaces.AuthenticateApiKeyAsync(request, fx.As(t)).ResponseAsync);
        var gateway = fx.As("gateway", Scope.ApiKeysVerify);
        var identity = await fx.Workspaces.AuthenticateApiKeyAsync(request, gateway);
        Assert.Equal((t, created.Key.KeyId), (identity.TenantId, identity.KeyId));
        Assert.Equal([Scope.ContactsRead], identity.Scopes);

        // One spelling per key: the secret's last character carries 2 unused bits, and flipping one is refused.
        const string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        var alias = created.Secret[..^1] + alphabet[alphabet.IndexOf(created.Secret[^1], StringComparison.Ordinal) ^ 1];
        await Rpc.FailsWith(StatusCode.NotFound, () => fx.Workspaces.AuthenticateApiKeyAsync(new AuthenticateApiKeyRequest { Key = alias }, gateway).ResponseAsync);

        // A key cannot make keys (revoking a leaked admin key must not leave keys it made).
        var asKey = new CallOptions(new Metadata { { "authorization", "Bearer " + fx.Host.Tokens.Issue(t, [Scope.All], subject: $"api-key:{created.Key.KeyId}") } });
        await Rpc.FailsWith(StatusCode.PermissionDenied, () => fx.Workspaces.CreateApiKeyAsync(
            new CreateApiKeyRequest { Name = "child", Scopes = { Scope.ContactsRead } }, asKey).ResponseAsync);

        // A wrong secret for a real key id, and a revoked key, are both unknown.
        var wrong = created.Secret[..^4] + (created.Secret.EndsWith("AAAA", StringComparison.Ordinal) ? "BBBB" : "AAAA");
        await Rpc.FailsWith(StatusCode.NotFound, () => fx.Workspaces.AuthenticateApiKeyAsync(new AuthenticateApiKeyRequest { Key = wrong }, gateway).ResponseAsync);
        var revoked = await fx.Workspaces.RevokeApiKeyAsync(new RevokeApiKeyRequest { KeyId = created.Key.KeyId }, admin);
        Assert.NotNull(revoked.RevokedAt);
        await Rpc.FailsWith(StatusCode.NotFound, () => fx.Workspaces.AuthenticateApiKeyAsync(request, gateway).ResponseAsync);
        Assert.Single((await fx.Workspaces.ListApiKeysAsync(new ListApiKeysRequest(), admin)).Keys, k => k.RevokedAt is not null);
    }
}
