using Crm.BuildingBlocks.Tenancy;
using Crm.Contacts.Tests.Infrastructure;
using Crm.Contacts.V1;
using Google.Protobuf.WellKnownTypes;
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

    [Fact]
    public async Task Should_refuse_a_key_past_its_expiry_and_refuse_an_expiry_in_the_past()
    {
        var t = ContactsFixture.NewTenant();
        var admin = fx.As(t, Scope.WorkspaceAdmin, Scope.ContactsRead);
        var past = await Rpc.FailsWith(StatusCode.InvalidArgument, () => fx.Workspaces.CreateApiKeyAsync(new CreateApiKeyRequest
        {
            Name = "late", Scopes = { Scope.ContactsRead }, ExpiresAt = Timestamp.FromDateTime(DateTime.UtcNow.AddMinutes(-1)),
        }, admin).ResponseAsync);
        Assert.Equal(["expires_at"], Rpc.ViolatedFields(past));

        var expiresAt = Millis(DateTime.UtcNow.AddSeconds(2)); // PostgreSQL keeps microseconds
        var created = await fx.Workspaces.CreateApiKeyAsync(new CreateApiKeyRequest
        {
            Name = "campaign tool", Scopes = { Scope.ContactsRead }, ExpiresAt = Timestamp.FromDateTime(expiresAt),
        }, admin);
        Assert.Equal(Timestamp.FromDateTime(expiresAt), created.Key.ExpiresAt);
        var gateway = fx.As("gateway", Scope.ApiKeysVerify);
        var request = new AuthenticateApiKeyRequest { Key = created.Secret };
        var identity = await fx.Workspaces.AuthenticateApiKeyAsync(request, gateway);
        Assert.Equal(Timestamp.FromDateTime(expiresAt), identity.ExpiresAt); // the gateway trusts it no longer than this

        var wait = expiresAt - DateTime.UtcNow + TimeSpan.FromMilliseconds(100);
        if (wait > TimeSpan.Zero) await Task.Delay(wait); // a clock condition, not a wait for processing
        await Rpc.FailsWith(StatusCode.NotFound, () => fx.Workspaces.AuthenticateApiKeyAsync(request, gateway).ResponseAsync);
        var listed = Assert.Single((await fx.Workspaces.ListApiKeysAsync(new ListApiKeysRequest(), admin)).Keys);
        Assert.Equal(Timestamp.FromDateTime(expiresAt), listed.ExpiresAt);
    }

    [Fact]
    public async Task Should_keep_the_latest_use_of_each_key_from_the_gateways_batches()
    {
        var (a, b) = (ContactsFixture.NewTenant(), ContactsFixture.NewTenant());
        var keyA = (await fx.Workspaces.CreateApiKeyAsync(new CreateApiKeyRequest { Name = "a", Scopes = { Scope.ContactsRead } }, fx.As(a))).Key.KeyId;
        var keyB = (await fx.Workspaces.CreateApiKeyAsync(new CreateApiKeyRequest { Name = "b", Scopes = { Scope.ContactsRead } }, fx.As(b))).Key.KeyId;
        var unused = (await fx.Workspaces.CreateApiKeyAsync(new CreateApiKeyRequest { Name = "unused", Scopes = { Scope.ContactsRead } }, fx.As(b))).Key.KeyId;
        var gateway = fx.As("gateway", Scope.ApiKeysVerify);
        var now = Millis(DateTime.UtcNow);
        static ApiKeyUse Use(string keyId, DateTime at) => new() { KeyId = keyId, UsedAt = Timestamp.FromDateTime(at) };

        // One batch across workspaces; a key twice in it keeps its latest time; a time ahead of the server's counts as now.
        await fx.Workspaces.RecordApiKeyUseAsync(new RecordApiKeyUseRequest { Uses = { Use(keyA, now.AddMinutes(-5)), Use(keyA, now.AddMinutes(-2)), Use(keyB, now.AddHours(1)) } }, gateway);
        // A late batch with an older time does not move it back.
        await fx.Workspaces.RecordApiKeyUseAsync(new RecordApiKeyUseRequest { Uses = { Use(keyA, now.AddMinutes(-10)) } }, gateway);

        var listedA = Assert.Single((await fx.Workspaces.ListApiKeysAsync(new ListApiKeysRequest(), fx.As(a))).Keys);
        Assert.Equal(Timestamp.FromDateTime(now.AddMinutes(-2)), listedA.LastUsedAt);
        var listedB = (await fx.Workspaces.ListApiKeysAsync(new ListApiKeysRequest(), fx.As(b))).Keys;
        Assert.InRange(listedB.Single(k => k.KeyId == keyB).LastUsedAt.ToDateTime(), now, DateTime.UtcNow.AddSeconds(1));
        Assert.Null(listedB.Single(k => k.KeyId == unused).LastUsedAt);

        // Only the gateway reports uses (it crosses workspaces), and a malformed one is refused naming it.
        await Rpc.FailsWith(StatusCode.PermissionDenied, () => fx.Workspaces.RecordApiKeyUseAsync(
            new RecordApiKeyUseRequest { Uses = { Use(keyA, now) } }, fx.As(a)).ResponseAsync);
        var bad = await Rpc.FailsWith(StatusCode.InvalidArgument, () => fx.Workspaces.RecordApiKeyUseAsync(
            new RecordApiKeyUseRequest { Uses = { Use(keyA, now), new ApiKeyUse { KeyId = "nope", UsedAt = Timestamp.FromDateTime(now) } } }, gateway).ResponseAsync);
        Assert.Equal(["uses[1].key_id"], Rpc.ViolatedFields(bad));
    }

    private static DateTime Millis(DateTime t) => t.AddTicks(-(t.Ticks % TimeSpan.TicksPerMillisecond));
}
