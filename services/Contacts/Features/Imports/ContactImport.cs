using Crm.BuildingBlocks.Data;
using System.Text.Json.Nodes;
using Crm.BuildingBlocks.Errors;
using Crm.BuildingBlocks.Outbox;
using Crm.Contacts.Features.Contacts;
using Crm.Contacts.Features.Workspaces;
using Crm.Contracts.Contacts;
using Crm.Contacts.V1;
using Dapper;
using Npgsql;
using NpgsqlTypes;

namespace Crm.Contacts.Features.Imports;

/// <summary>
/// Contact CSV → upserts keyed by external id, through binary COPY into staging and one merge.
/// An empty cell leaves the stored value alone; attributes merge; tags add. A contact whose data
/// does not change is not touched (no new updated_at, no event), so re-importing a file changes nothing.
/// </summary>
public sealed class ContactImport(ContactColumns mapping, WorkspaceSettings workspace, ImportRun run)
{
    private int _iId, _iName, _iEmail, _iPhone, _iLocale, _iTz, _iTags;
    private (int Index, AttributeColumn Column)[] _attributes = [];

    public async Task<(long Created, long Updated)> RunAsync(TenantDb db, CsvReader csv, CancellationToken ct)
    {
        if (!await csv.ReadAsync(ct)) throw new InvalidArgumentException("data", "the file is empty (a header row is required)");
        MapColumns(new ColumnMap(csv.ToStrings()));
        var columns = csv.FieldCount;
        var tagSeparator = mapping.TagSeparator.Length > 0 ? mapping.TagSeparator : ";";

        await using var scope = await db.BeginAsync(run.Tenant, ct);
        var (conn, tx) = scope;
        await conn.ExecuteAsync("""
            CREATE TEMP TABLE import_contacts (
                line_no bigint, external_id text, name text, email text, phone text, locale text, time_zone text,
                tags text[], attributes jsonb
            ) ON COMMIT DROP
            """, transaction: tx);
        await using (var copy = await conn.BeginBinaryImportAsync(
            "COPY import_contacts (line_no, external_id, name, email, phone, locale, time_zone, tags, attributes) FROM STDIN (FORMAT BINARY)", ct))
        {
            while (await csv.ReadAsync(ct))
            {
                run.Read();
                var row = csv.ToStrings();
                if (csv.Error is not null) run.Reject(csv.Line, "", csv.Error);
                else if (row.Length != columns) run.Reject(csv.Line, "", $"expected {columns} columns, found {row.Length}");
                else if (Parse(row, csv.Line, tagSeparator) is { } c)
                {
                    await copy.StartRowAsync(ct);
                    await copy.WriteAsync(csv.Line, NpgsqlDbType.Bigint, ct);
                    await copy.WriteAsync(c.ExternalId, NpgsqlDbType.Text, ct);
                    foreach (var value in new[] { c.Name, c.Email, c.Phone, c.Locale, c.TimeZone })
                    {
                        if (value is null) await copy.WriteNullAsync(ct);
                        else await copy.WriteAsync(value, NpgsqlDbType.Text, ct);
                    }
                    await copy.WriteAsync(c.Tags, NpgsqlDbType.Array | NpgsqlDbType.Text, ct);
                    await copy.WriteAsync(c.Attributes, NpgsqlDbType.Jsonb, ct);
                    run.Accepted();
                }
            }
            await copy.CompleteAsync(ct);
        }
        await run.FinishReadingAsync(ct);

        // The last row of a customer in the file wins.
        var counts = await conn.QuerySingleAsync<(long Created, long Updated)>(new CommandDefinition("""
            WITH src AS (
                SELECT DISTINCT ON (external_id) * FROM import_contacts ORDER BY external_id, line_no DESC),
            upserted AS (
                INSERT INTO contacts AS c (tenant_id, contact_id, external_id, name, email, phone, locale, time_zone, attributes, tags, suppressed, updated_at)
                SELECT @tenant, gen_random_uuid(), s.external_id, s.name, s.email, s.phone, s.locale, s.time_zone, s.attributes,
                       ARRAY(SELECT DISTINCT t FROM unnest(s.tags) t ORDER BY t),
                       EXISTS (SELECT 1 FROM suppressions x WHERE x.tenant_id = @tenant AND x.value_hash IN (
                           suppression_hmac(@tenant, 'external_id', s.external_id, @innerPad, @outerPad),
                           suppression_hmac(@tenant, 'email', lower(coalesce(s.email, '')), @innerPad, @outerPad),
                           suppression_hmac(@tenant, 'phone', coalesce(s.phone, ''), @innerPad, @outerPad))),
                       clock_timestamp()
                FROM src s
                ON CONFLICT (tenant_id, external_id) DO UPDATE SET
                    name = coalesce(excluded.name, c.name),
                    email = coalesce(excluded.email, c.email),
                    phone = coalesce(excluded.phone, c.phone),
                    locale = coalesce(excluded.locale, c.locale),
                    time_zone = coalesce(excluded.time_zone, c.time_zone),
                    attributes = c.attributes || excluded.attributes,
                    tags = ARRAY(SELECT DISTINCT t FROM unnest(c.tags || excluded.tags) t ORDER BY t),
                    suppressed = c.suppressed OR excluded.suppressed,
                    -- the version of the change (the event's occurredAt): taken under the row's lock, so it
                    -- follows a change the API made while the import ran
                    updated_at = clock_timestamp()
                WHERE c.erased_at IS NULL AND (
                    c.name, c.email, c.phone, c.locale, c.time_zone, c.attributes, c.tags
                ) IS DISTINCT FROM (
                    coalesce(excluded.name, c.name), coalesce(excluded.email, c.email), coalesce(excluded.phone, c.phone),
                    coalesce(excluded.locale, c.locale), coalesce(excluded.time_zone, c.time_zone), c.attributes || excluded.attributes,
                    ARRAY(SELECT DISTINCT t FROM unnest(c.tags || excluded.tags) t ORDER BY t))
                RETURNING c.contact_id, c.external_id, c.email, c.phone, c.locale, c.time_zone, c.tags, c.attributes,
                          c.suppressed, c.created_at, c.updated_at, (xmax = 0) AS inserted),
            events AS (
                INSERT INTO outbox_messages (message_type, payload)
                SELECT @contactType, jsonb_build_object('tenantId', @tenant, 'contactId', contact_id, 'externalId', external_id,
                    'email', email, 'phone', phone, 'locale', locale, 'timeZone', time_zone, 'tags', to_jsonb(tags),
                    'attributesJson', attributes::text, 'suppressed', suppressed, 'occurredAt', updated_at, 'createdAt', created_at,
                    'pushTokens', CASE WHEN inserted THEN 0 ELSE (
                        SELECT count(*) FROM push_tokens p WHERE p.tenant_id = @tenant AND p.contact_id = upserted.contact_id) END)::text
                FROM upserted)
            SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM upserted
            """, new
            {
                tenant = run.Tenant, contactType = Outbox.TypeName<ContactUpserted>(), innerPad = run.Suppressions.InnerPad, outerPad = run.Suppressions.OuterPad,
            }, tx, commandTimeout: 0, cancellationToken: ct));

        await run.CompleteAsync(conn, tx, counts.Created, counts.Updated, 0, 0);
        await tx.CommitAsync(ct);
        return counts;
    }

    private void MapColumns(ColumnMap map)
    {
        var v = new Validation();
        const string m = "header.contacts.";
        _iId = map.Find(m + "external_id", mapping.ExternalId, true, v);
        _iName = map.Find(m + "name", mapping.Name, false, v);
        _iEmail = map.Find(m + "email", mapping.Email, false, v);
        _iPhone = map.Find(m + "phone", mapping.Phone, false, v);
        _iLocale = map.Find(m + "locale", mapping.Locale, false, v);
        _iTz = map.Find(m + "time_zone", mapping.TimeZone, false, v);
        _iTags = map.Find(m + "tags", mapping.Tags, false, v);
        _attributes = mapping.Attributes.Select((a, i) =>
        {
            if (!ContactFields.IsValidKey(a.Attribute)) v.Add($"{m}attributes[{i}].attribute", "is required (1 to 128 printable characters)");
            return (map.Find($"{m}attributes[{i}].column", a.Column, true, v), a);
        }).ToArray();
        v.ThrowIfInvalid();
    }

    private ParsedContact? Parse(string[] row, long line, string tagSeparator)
    {
        string? Cell(int i) => i >= 0 && row[i].Length > 0 ? row[i] : null;

        var id = ContactFields.NormaliseExternalId(row[_iId]);
        if (!ContactFields.IsValidKey(id, 256)) return Reject(line, mapping.ExternalId, "the customer id is empty or longer than 256 characters");
        var email = Cell(_iEmail);
        if (email is not null)
        {
            if (!ContactFields.TryNormaliseEmail(email, out var normalised)) return Reject(line, mapping.Email, $"'{email}' is not an email address");
            email = normalised;
        }
        var phone = Cell(_iPhone);
        if (phone is not null)
        {
            if (!ContactFields.TryNormalisePhone(phone, workspace.DefaultRegion, out var e164, out var error)) return Reject(line, mapping.Phone, error);
            phone = e164;
        }
        var locale = Cell(_iLocale);
        if (locale is not null && !ContactFields.IsValidLocale(locale)) return Reject(line, mapping.Locale, $"'{locale}' is not a known locale");
        var tz = Cell(_iTz);
        if (tz is not null && !ContactFields.IsValidTimeZone(tz)) return Reject(line, mapping.TimeZone, $"'{tz}' is not an IANA time zone");
        var tags = Cell(_iTags)?.Split(tagSeparator, StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) ?? [];
        var attributes = new JsonObject();
        foreach (var (index, column) in _attributes)
        {
            if (row[index].Length == 0) continue;
            if (!ContactFields.TryParseAttribute(row[index], column.Type, out var node))
                return Reject(line, column.Column, $"'{row[index]}' is not a {column.Type.ToString().ToLowerInvariant()}");
            attributes[column.Attribute] = node;
        }
        return new ParsedContact(id, Cell(_iName), email, phone, locale, tz, tags, attributes.ToJsonString());
    }

    private ParsedContact? Reject(long line, string column, string reason)
    {
        run.Reject(line, column, reason);
        return null;
    }

    private sealed record ParsedContact(string ExternalId, string? Name, string? Email, string? Phone, string? Locale,
        string? TimeZone, string[] Tags, string Attributes);
}
