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
    /// <summary>
    /// Known customers are probed id by id (LIMIT 1 keeps the planner from hashing every contact of
    /// the tenant); only the others are hashed against the suppression list and inserted. {0} is the
    /// conflict clause.
    /// </summary>
    private const string EnsureSql = """
        WITH known AS (
            SELECT u.external_id, c.contact_id
            FROM unnest(@externalIds) AS u(external_id)
            CROSS JOIN LATERAL (
                SELECT contact_id FROM contacts WHERE tenant_id = @tenant AND external_id = u.external_id LIMIT 1) c),
        created AS (
            INSERT INTO contacts (tenant_id, contact_id, external_id, suppressed)
            SELECT @tenant, gen_random_uuid(), e, EXISTS (
                SELECT 1 FROM suppressions s WHERE s.tenant_id = @tenant AND s.value_hash = suppression_hmac(@tenant, 'external_id', e, @innerPad, @outerPad))
            FROM unnest(@externalIds) AS e
            WHERE e NOT IN (SELECT external_id FROM known)
            {0}
            RETURNING external_id, contact_id)
        SELECT external_id, contact_id, false FROM known
        UNION ALL
        SELECT external_id, contact_id, true FROM created
        """;

    private static readonly string InsertOrSkip = EnsureSql.Replace("{0}", "ON CONFLICT (tenant_id, external_id) DO NOTHING", StringComparison.Ordinal);
    private static readonly string InsertAll = EnsureSql.Replace("{0}", "", StringComparison.Ordinal);

    /// <param name="mostlyNew">
    /// The import's batches, where most customers are new: the insert goes without ON CONFLICT, whose
    /// speculative insertion (a conflict check and a token lock per row) was a third of the statement's
    /// cost. A customer created meanwhile by another transaction fails that statement as a whole (behind
    /// a savepoint when in a transaction), and it runs again with ON CONFLICT.
    /// </param>
    /// <returns>The contact id of every external id, and how many contacts were created.</returns>
    public static async Task<(Dictionary<string, Guid> Ids, int Created)> EnsureAsync(
        NpgsqlConnection conn, NpgsqlTransaction? tx, Suppressions.SuppressionKey key, string tenant, string[] externalIds, CancellationToken ct,
        bool mostlyNew = false)
    {
        var ids = new Dictionary<string, Guid>(externalIds.Length, StringComparer.Ordinal);
        if (externalIds.Length == 0) return (ids, 0);
        var created = 0;
        Task<IEnumerable<(string, Guid, bool)>> Run(string sql) =>
            conn.QueryAsync<(string, Guid, bool)>(new CommandDefinition(sql, new { tenant, externalIds, innerPad = key.InnerPad, outerPad = key.OuterPad }, tx, cancellationToken: ct));
        IEnumerable<(string, Guid, bool)> rows;
        if (!mostlyNew)
        {
            rows = await Run(InsertOrSkip);
        }
        else
        {
            if (tx is not null) await tx.SaveAsync("ensure_contacts", ct);
            try
            {
                rows = await Run(InsertAll);
            }
            catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.UniqueViolation)
            {
                if (tx is not null) await tx.RollbackAsync("ensure_contacts", ct);
                rows = await Run(InsertOrSkip);
            }
        }
        foreach (var (externalId, contactId, isNew) in rows)
        {
            ids[externalId] = contactId;
            if (isNew) created++;
        }
        if (ids.Count < externalIds.Length)
        {
            // Created by a concurrent transaction after this statement's snapshot: visible to the next one.
            var missing = externalIds.Where(e => !ids.ContainsKey(e)).ToArray();
            foreach (var (externalId, contactId) in await conn.QueryAsync<(string, Guid)>(new CommandDefinition(
                "SELECT external_id, contact_id FROM contacts WHERE tenant_id = @tenant AND external_id = ANY(@missing)",
                new { tenant, missing }, tx, cancellationToken: ct)))
                ids[externalId] = contactId;
        }
        return (ids, created);
    }
}
