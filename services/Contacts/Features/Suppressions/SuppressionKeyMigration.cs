using Crm.BuildingBlocks.Data;
using Dapper;

namespace Crm.Contacts.Features.Suppressions;

/// <summary>
/// Converts the suppression hashes written before the key existed (plain SHA-256 digests) into keyed
/// ones, once, at start-up: the keyed hash is an HMAC of that very digest, so no value is needed.
/// A deliberate cross-tenant write, named as such.
/// </summary>
public sealed class SuppressionKeyMigration(TenantDb db, SuppressionKey key, ILogger<SuppressionKeyMigration> logger) : IHostedService
{
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        await using var scope = await db.BeginCrossTenantAsync("suppression hashes: keying the ones written before the key", cancellationToken);
        var converted = await scope.Connection.ExecuteAsync(new CommandDefinition(
            "UPDATE suppressions SET value_hash = sha256(@outer || sha256(@inner || value_hash)), keyed = true WHERE NOT keyed",
            new { inner = key.InnerPad, outer = key.OuterPad }, cancellationToken: cancellationToken));
        await scope.CommitAsync(cancellationToken);
        if (converted > 0) logger.LogInformation("Keyed {Count} suppression hashes written before Contacts:SuppressionKey", converted);
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
