using Dapper;
using Npgsql;

namespace Crm.Contacts.Features.Contacts;

/// <summary>
/// Transactions first: a purchase by a customer id never seen before creates the contact, checked
/// against the suppression list. Such a contact has no profile to announce; it reaches projections
/// through the ContactId of TransactionsRecorded, and ContactUpserted follows once a profile is upserted.
/// Used by RecordTransactions and the transaction import.
/// </summary>
public static class PurchaseContacts
{
    /// <returns>The contact id of every external id, and how many contacts were created.</returns>
    public static async Task<(Dictionary<string, Guid> Ids, int Created)> EnsureAsync(
        NpgsqlConnection conn, NpgsqlTransaction tx, string tenant, string[] externalIds, CancellationToken ct)
    {
        if (externalIds.Length == 0) return (new Dictionary<string, Guid>(StringComparer.Ordinal), 0);
        var rows = (await conn.QueryAsync<(string ExternalId, Guid ContactId, bool Created)>(new CommandDefinition("""
            WITH created AS (
                INSERT INTO contacts (tenant_id, contact_id, external_id, suppressed)
                SELECT @tenant, gen_random_uuid(), e, EXISTS (
                    SELECT 1 FROM suppressions s WHERE s.tenant_id = @tenant AND s.value_hash = suppression_hash(@tenant, 'external_id', e))
                FROM unnest(@externalIds) AS e
                ON CONFLICT (tenant_id, external_id) DO NOTHING
                RETURNING contact_id, external_id)
            SELECT external_id, contact_id, true FROM created
            UNION ALL
            -- Probed id by id (LIMIT 1 keeps the planner from hashing every contact of the tenant).
            SELECT u.external_id, c.contact_id, false
            FROM unnest(@externalIds) AS u(external_id)
            CROSS JOIN LATERAL (
                SELECT contact_id FROM contacts WHERE tenant_id = @tenant AND external_id = u.external_id LIMIT 1) c
            """, new { tenant, externalIds }, tx, cancellationToken: ct))).AsList();
        return (rows.ToDictionary(r => r.ExternalId, r => r.ContactId, StringComparer.Ordinal), rows.Count(r => r.Created));
    }
}
