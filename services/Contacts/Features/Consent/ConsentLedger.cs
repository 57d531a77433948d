using Crm.BuildingBlocks.Outbox;
using Crm.Contracts.Contacts;
using Dapper;
using Npgsql;

namespace Crm.Contacts.Features.Consent;

/// <summary>
/// Recording a consent decision, wherever it comes from (SetConsent, a STOP reply): appended to the
/// history (the legal proof, never rewritten), and the current state moved unless a newer decision
/// already stands (a late webhook, an old import), with ConsentChanged in the outbox when it moves.
/// </summary>
internal static class ConsentLedger
{
    public sealed record Decision(Guid ContactId, string Channel, string Purpose, string Status, string Source, string Evidence, DateTime OccurredAt);

    /// <returns>The current state after the decision, and whether it changed.</returns>
    public static async Task<(ConsentRow Current, bool Changed)> RecordAsync(NpgsqlConnection conn, NpgsqlTransaction tx, string tenant, Decision d)
    {
        var p = new { tenant, d.ContactId, d.Channel, d.Purpose, d.Status, d.Source, d.Evidence, d.OccurredAt };
        await conn.ExecuteAsync("""
            INSERT INTO consent_history (tenant_id, contact_id, channel, purpose, status, source, evidence, occurred_at)
            VALUES (@tenant, @ContactId, @Channel, @Purpose, @Status, @Source, @Evidence, @OccurredAt)
            """, p, tx);
        var current = await conn.QuerySingleOrDefaultAsync<ConsentRow>("""
            SELECT channel, purpose, status, source, changed_at, consented_at FROM consents
            WHERE tenant_id = @tenant AND contact_id = @ContactId AND channel = @Channel AND purpose = @Purpose
            FOR UPDATE
            """, p, tx);

        var changed = current is null || (current.Status != d.Status && current.ChangedAt <= d.OccurredAt);
        if (changed)
        {
            current = await conn.QuerySingleAsync<ConsentRow>("""
                INSERT INTO consents (tenant_id, contact_id, channel, purpose, status, source, changed_at, consented_at)
                VALUES (@tenant, @ContactId, @Channel, @Purpose, @Status, @Source, @OccurredAt,
                        CASE WHEN @Status = 'opted_in' THEN @OccurredAt END)
                ON CONFLICT (tenant_id, contact_id, channel, purpose) DO UPDATE SET
                    status = excluded.status, source = excluded.source, changed_at = excluded.changed_at,
                    consented_at = excluded.consented_at
                RETURNING channel, purpose, status, source, changed_at, consented_at
                """, p, tx);
            await Outbox.EnqueueAsync(conn, tx, new ConsentChanged(
                tenant, d.ContactId, d.Channel, d.Purpose, d.Status, d.Source,
                new DateTimeOffset(d.OccurredAt, TimeSpan.Zero),
                current.ConsentedAt is { } at ? new DateTimeOffset(at, TimeSpan.Zero) : null));
        }
        else if (current!.Status == d.Status && d.Status == "opted_in" && current.ChangedAt <= d.OccurredAt)
        {
            // A repeated opt-in is a re-confirmation: the two-year clock starts again.
            current = await conn.QuerySingleAsync<ConsentRow>("""
                UPDATE consents SET consented_at = @OccurredAt, source = @Source
                WHERE tenant_id = @tenant AND contact_id = @ContactId AND channel = @Channel AND purpose = @Purpose
                RETURNING channel, purpose, status, source, changed_at, consented_at
                """, p, tx);
        }
        return (current, changed);
    }
}
