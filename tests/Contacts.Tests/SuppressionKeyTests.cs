using System.Security.Cryptography;
using System.Text;
using Crm.Contacts.Features.Suppressions;
using Crm.Contacts.Tests.Infrastructure;
using Crm.Contacts.V1;
using Dapper;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Npgsql;

namespace Crm.Contacts.Tests;

/// <summary>Erased identities are kept as keyed hashes: unreadable without the deployment's key, recognised with it.</summary>
[Collection(ContactsCollection.Name)]
public sealed class SuppressionKeyTests(ContactsFixture fx)
{
    private static byte[] Unkeyed(string tenant, string kind, string value) => SHA256.HashData(Encoding.UTF8.GetBytes($"{tenant}\n{kind}\n{value}"));

    [Fact]
    public async Task Should_store_keyed_hashes_the_same_in_csharp_and_sql_and_never_the_plain_digest()
    {
        var t = ContactsFixture.NewTenant();
        var key = fx.Host.App.Services.GetRequiredService<SuppressionKey>();
        await fx.Client.UpsertContactAsync(new UpsertContactRequest { ExternalId = "gone", Phone = "010-7000-0001" }, fx.As(t));
        await fx.Client.EraseContactAsync(new EraseContactRequest { Contact = new ContactRef { ExternalId = "gone" } }, fx.As(t));

        await using var db = new NpgsqlConnection(fx.ConnectionString);
        var stored = (await db.QueryAsync<(string Kind, byte[] Hash, bool Keyed)>(
            "SELECT kind, value_hash, keyed FROM suppressions WHERE tenant_id = @t ORDER BY kind", new { t })).ToList();
        Assert.Equal(["external_id", "phone"], stored.Select(s => s.Kind));
        Assert.All(stored, s => Assert.True(s.Keyed));
        var phone = stored.Single(s => s.Kind == "phone").Hash;
        Assert.Equal(key.Hash(t, "phone", "+821070000001"), phone);
        Assert.NotEqual(Unkeyed(t, "phone", "+821070000001"), phone); // a plain SHA-256 of the number is what attackers try
        var inSql = await db.ExecuteScalarAsync<byte[]>("SELECT suppression_hmac(@t, 'phone', '+821070000001', @inner, @outer)",
            new { t, inner = key.InnerPad, outer = key.OuterPad });
        Assert.Equal(phone, inSql);

        // The imports (which compute the hash in SQL) recognise the erased number.
        await Imports.ContactsAsync(fx.Client, fx.As(t), "id,phone\nnew-1,010-7000-0001\n", new ContactColumns { ExternalId = "id", Phone = "phone" });
        Assert.True((await fx.Client.GetContactAsync(new GetContactRequest { Contact = new ContactRef { ExternalId = "new-1" } }, fx.As(t))).Suppressed);
    }

    [Fact]
    public async Task Should_key_the_hashes_written_before_the_key_and_still_recognise_them()
    {
        var t = ContactsFixture.NewTenant();
        await using var db = new NpgsqlConnection(fx.ConnectionString);
        // As the platform wrote them before: a plain digest, not keyed.
        await db.ExecuteAsync("INSERT INTO suppressions (tenant_id, value_hash, kind) VALUES (@t, @hash, 'external_id')",
            new { t, hash = Unkeyed(t, "external_id", "legacy-1") });

        foreach (var started in fx.Host.App.Services.GetServices<IHostedService>().OfType<SuppressionKeyMigration>())
            await started.StartAsync(CancellationToken.None); // what the next start-up does

        var row = await db.QuerySingleAsync<(byte[] Hash, bool Keyed)>("SELECT value_hash, keyed FROM suppressions WHERE tenant_id = @t", new { t });
        Assert.True(row.Keyed);
        Assert.NotEqual(Unkeyed(t, "external_id", "legacy-1"), row.Hash);
        var again = await fx.Client.UpsertContactAsync(new UpsertContactRequest { ExternalId = "legacy-1" }, fx.As(t));
        Assert.True(again.Contact.Suppressed);
    }
}
