using System.Text.Json;
using System.Text.Json.Nodes;
using Crm.BuildingBlocks.Data;
using Crm.BuildingBlocks.Errors;
using Crm.BuildingBlocks.Outbox;
using Crm.BuildingBlocks.Tenancy;
using Crm.Contacts.Features.Contacts;
using Crm.Contracts.Contacts;
using Crm.Contacts.V1;
using Dapper;
using Grpc.Core;
using Npgsql;

namespace Crm.Contacts.Features;

public sealed partial class ContactsGrpcService
{
    private const string ContactColumns = """
        contact_id, external_id, name, email, phone, locale, time_zone, attributes::text AS attributes,
        tags, suppressed, unreachable::text AS unreachable, erased_at, created_at, updated_at
        """;

    public override async Task<UpsertContactResponse> UpsertContact(UpsertContactRequest request, ServerCallContext context)
    {
        var caller = context.Caller(Scope.ContactsWrite);
        var ct = context.CancellationToken;
        var workspace = await _workspaces.GetAsync(caller.TenantId, ct);

        var v = new Validation();
        var externalId = request.ExternalId.Trim();
        if (!ContactFields.IsValidKey(externalId, 256)) v.Add("external_id", "is required (1 to 256 characters)");
        string? email = null, phone = null;
        if (request.HasEmail && request.Email.Length > 0)
        {
            if (ContactFields.TryNormaliseEmail(request.Email, out var e)) email = e;
            else v.Add("email", $"'{request.Email}' is not an email address");
        }
        if (request.HasPhone && request.Phone.Length > 0)
        {
            if (ContactFields.TryNormalisePhone(request.Phone, workspace.DefaultRegion, out var p, out var error)) phone = p;
            else v.Add("phone", error);
        }
        if (request.HasTimeZone && request.TimeZone.Length > 0 && !ContactFields.IsValidTimeZone(request.TimeZone))
            v.Add("time_zone", $"'{request.TimeZone}' is not an IANA time zone");
        if (request.HasLocale && request.Locale.Length > 0 && !ContactFields.IsValidLocale(request.Locale))
            v.Add("locale", $"'{request.Locale}' is not a known locale");
        foreach (var key in request.Attributes.Keys.Where(k => !ContactFields.IsValidKey(k)))
            v.Add($"attributes[{key}]", "attribute names are 1 to 128 printable characters");
        foreach (var tag in request.AddTags.Concat(request.RemoveTags).Where(t => !ContactFields.IsValidKey(t)))
            v.Add("add_tags", $"'{tag}' is not a tag (1 to 128 printable characters)");
        v.ThrowIfInvalid();

        await using var scope = await _db.BeginAsync(caller.TenantId, ct);
        var (conn, tx) = scope;
        var existing = await conn.QuerySingleOrDefaultAsync<ContactRow>(
            $"SELECT {ContactColumns} FROM contacts WHERE tenant_id = @tenant AND external_id = @externalId FOR UPDATE",
            new { tenant = caller.TenantId, externalId }, tx);

        // Field present = set it (an empty string clears it); absent = keep.
        string? Pick(bool has, string value, string? normalised, string? current) =>
            has ? (value.Length == 0 ? null : normalised ?? value) : current;

        var attributes = existing is null ? new JsonObject() : JsonNode.Parse(existing.Attributes)!.AsObject();
        foreach (var (key, value) in request.Attributes)
        {
            var node = ContactFields.ToJson(value);
            if (node is null) attributes.Remove(key);
            else attributes[key] = node;
        }
        var tags = new SortedSet<string>(existing?.Tags ?? [], StringComparer.Ordinal);
        tags.UnionWith(request.AddTags);
        tags.ExceptWith(request.RemoveTags);

        var next = new ContactRow
        {
            ContactId = existing?.ContactId ?? Guid.CreateVersion7(),
            ExternalId = externalId,
            Name = Pick(request.HasName, request.Name, null, existing?.Name),
            Email = Pick(request.HasEmail, request.Email, email, existing?.Email),
            Phone = Pick(request.HasPhone, request.Phone, phone, existing?.Phone),
            Locale = Pick(request.HasLocale, request.Locale, null, existing?.Locale),
            TimeZone = Pick(request.HasTimeZone, request.TimeZone, null, existing?.TimeZone),
            Attributes = attributes.ToJsonString(),
            Tags = tags.ToArray(),
            Suppressed = existing?.Suppressed ?? false,
            CreatedAt = existing?.CreatedAt ?? DateTime.UtcNow,
            UpdatedAt = DateTime.UtcNow,
        };

        bool changed;
        if (existing is null)
        {
            next.Suppressed = await IsSuppressedAsync(conn, tx, _suppressions, caller.TenantId, next);
            await conn.ExecuteAsync("""
                INSERT INTO contacts (tenant_id, contact_id, external_id, name, email, phone, locale, time_zone, attributes, tags, suppressed,
                                      created_at, updated_at)
                VALUES (@tenant, @ContactId, @ExternalId, @Name, @Email, @Phone, @Locale, @TimeZone, @Attributes::jsonb, @Tags, @Suppressed,
                        statement_timestamp(), statement_timestamp())
                """, Params(caller.TenantId, next), tx);
            changed = true;
        }
        else
        {
            changed = !existing.SameData(next);
            if (changed)
            {
                // A new email or phone may belong to an erased identity.
                next.Suppressed = existing.Suppressed || await IsSuppressedAsync(conn, tx, _suppressions, caller.TenantId, next);
                await conn.ExecuteAsync("""
                    UPDATE contacts SET name = @Name, email = @Email, phone = @Phone, locale = @Locale, time_zone = @TimeZone,
                        attributes = @Attributes::jsonb, tags = @Tags, suppressed = @Suppressed, updated_at = statement_timestamp(),
                        -- a new address is worth trying again
                        unreachable = unreachable
                            - CASE WHEN phone IS DISTINCT FROM @Phone THEN 'sms' ELSE '' END
                            - CASE WHEN email IS DISTINCT FROM @Email THEN 'email' ELSE '' END
                    WHERE tenant_id = @tenant AND contact_id = @ContactId
                    """, Params(caller.TenantId, next), tx);
            }
            else
            {
                next = existing;
            }
        }
        var contact = await LoadContactAsync(conn, caller.TenantId, next.ContactId, ct);
        if (changed)
            await Outbox.EnqueueAsync(conn, tx, ToEvent(caller.TenantId, next, contact));
        await tx.CommitAsync(ct);
        return new UpsertContactResponse { Contact = contact, Created = existing is null, Changed = changed };
    }

    public override async Task<Contact> GetContact(GetContactRequest request, ServerCallContext context)
    {
        var caller = context.Caller(Scope.ContactsRead);
        await using var scope = await _db.BeginAsync(caller.TenantId, context.CancellationToken);
        var conn = scope.Connection;
        var contactId = await ResolveAsync(conn, null, caller.TenantId, request.Contact, "contact");
        return await LoadContactAsync(conn, caller.TenantId, contactId, context.CancellationToken);
    }

    public override async Task<ListContactsResponse> ListContacts(ListContactsRequest request, ServerCallContext context)
    {
        var caller = context.Caller(Scope.ContactsRead);
        var pageSize = PageToken.Size(request.PageSize);
        var after = PageToken.Decode(request.PageToken);
        await using var scope = await _db.BeginAsync(caller.TenantId, context.CancellationToken);
        var conn = scope.Connection;
        var rows = (await conn.QueryAsync<ContactRow>($"""
            SELECT {ContactColumns} FROM contacts
            WHERE tenant_id = @tenant AND erased_at IS NULL
              AND (@after::text IS NULL OR external_id > @after)
              AND (@tag::text IS NULL OR (tags @> ARRAY[@tag] AND cardinality(tags) > 0))
              AND (@email::text IS NULL OR lower(email) = lower(@email))
              AND (@query::text IS NULL OR external_id LIKE @query || '%' OR name ILIKE @query || '%' OR lower(email) LIKE lower(@query) || '%')
              AND (@updatedAfter::timestamptz IS NULL OR updated_at > @updatedAfter)
            ORDER BY external_id
            LIMIT @limit
            """, new
        {
            tenant = caller.TenantId,
            after,
            tag = NullIfEmpty(request.Tag),
            email = NullIfEmpty(request.Email),
            query = NullIfEmpty(request.Query?.Replace("%", "", StringComparison.Ordinal).Replace("_", "", StringComparison.Ordinal)),
            updatedAfter = request.UpdatedAfter?.ToDateTime(),
            limit = pageSize + 1,
        })).AsList();

        var response = new ListContactsResponse();
        response.Contacts.AddRange(rows.Take(pageSize).Select(r => r.ToProto()));
        if (rows.Count > pageSize) response.NextPageToken = PageToken.Encode(rows[pageSize - 1].ExternalId);
        return response;
    }

    public override async Task<EraseContactResponse> EraseContact(EraseContactRequest request, ServerCallContext context)
    {
        var caller = context.Caller(Scope.ContactsWrite);
        var ct = context.CancellationToken;
        var tenant = caller.TenantId;
        await using var scope = await _db.BeginAsync(tenant, ct);
        var (conn, tx) = scope;
        var contactId = await ResolveAsync(conn, tx, tenant, request.Contact, "contact");
        var row = await conn.QuerySingleAsync<ContactRow>(
            $"SELECT {ContactColumns} FROM contacts WHERE tenant_id = @tenant AND contact_id = @contactId FOR UPDATE",
            new { tenant, contactId }, tx);

        // Keep only hashes, so that a later import of the same person is recognised and never messaged.
        var hashes = new List<(string Kind, string Value)> { ("external_id", row.ExternalId) };
        if (row.Email is not null) hashes.Add(("email", row.Email.ToLowerInvariant()));
        if (row.Phone is not null) hashes.Add(("phone", row.Phone));
        foreach (var (kind, value) in hashes)
            await conn.ExecuteAsync(
                "INSERT INTO suppressions (tenant_id, value_hash, kind, keyed) VALUES (@tenant, @hash, @kind, true) ON CONFLICT DO NOTHING",
                new { tenant, hash = _suppressions.Hash(tenant, kind, value), kind }, tx);

        var orders = await conn.ExecuteAsync("""
            UPDATE contacts SET external_id = 'erased:' || contact_id::text, name = NULL, email = NULL, phone = NULL,
                locale = NULL, time_zone = NULL, attributes = '{}', tags = '{}', suppressed = true,
                erased_at = now(), updated_at = now()
            WHERE tenant_id = @tenant AND contact_id = @contactId;
            DELETE FROM consents WHERE tenant_id = @tenant AND contact_id = @contactId;
            DELETE FROM consent_history WHERE tenant_id = @tenant AND contact_id = @contactId;
            DELETE FROM push_tokens WHERE tenant_id = @tenant AND contact_id = @contactId;
            UPDATE engagement_events SET contact_id = NULL, properties = '{}' WHERE tenant_id = @tenant AND contact_id = @contactId;
            """, new { tenant, contactId }, tx);
        // Their events still in the outbox (published or not) lose the personal data; the ids stay,
        // so consumers still apply them in order. Rejected import rows naming them go too.
        await conn.ExecuteAsync("""
            UPDATE outbox_messages SET payload = (payload::jsonb || jsonb_build_object(
                    'externalId', 'erased:' || @contactId::text, 'email', NULL, 'phone', NULL, 'attributesJson', '{}', 'tags', '[]'::jsonb))::text
            WHERE message_type = @type AND payload::jsonb @> jsonb_build_object('tenantId', @tenant::text, 'contactId', @contactId::text);
            DELETE FROM import_errors WHERE tenant_id = @tenant
                AND (strpos(reason, @externalId) > 0
                     OR (@email::text IS NOT NULL AND strpos(lower(reason), lower(@email)) > 0)
                     OR (@phone::text IS NOT NULL AND (strpos(reason, @phone) > 0 OR strpos(reason, @nationalPhone) > 0)));
            """, new
        {
            tenant, contactId, type = Outbox.TypeName<ContactUpserted>(), externalId = row.ExternalId,
            email = row.Email, phone = row.Phone, nationalPhone = NationalDigits(row.Phone),
        }, tx);
        // Purchases stay for aggregates, without the link to the person.
        var anonymised = await conn.ExecuteAsync(
            "UPDATE orders SET contact_id = NULL WHERE tenant_id = @tenant AND contact_id = @contactId",
            new { tenant, contactId }, tx);
        await Outbox.EnqueueAsync(conn, tx, new ContactErased(tenant, contactId, DateTimeOffset.UtcNow));
        await tx.CommitAsync(ct);
        _logger.LogInformation("Erased contact {ContactId} of {Tenant} ({Orders} orders anonymised)", contactId, tenant, anonymised);
        return new EraseContactResponse { ContactId = contactId.ToString(), OrdersAnonymised = anonymised };
    }

    /// <summary>Finds the contact a <see cref="ContactRef"/> names, in the caller's tenant only.</summary>
    /// <summary>The national number's digits (+821020000000 → 1020000000), as a shop's own files write them.</summary>
    private static string? NationalDigits(string? e164) =>
        e164 is null ? null : PhoneNumbers.PhoneNumberUtil.GetInstance().Parse(e164, null).NationalNumber.ToString(System.Globalization.CultureInfo.InvariantCulture);

    private static async Task<Guid> ResolveAsync(NpgsqlConnection conn, NpgsqlTransaction? tx, string tenant, ContactRef? reference, string field)
    {
        if (reference is null || (reference.Id.Length == 0) == (reference.ExternalId.Length == 0))
            throw new InvalidArgumentException(field, "set exactly one of id and external_id");
        Guid? id;
        if (reference.Id.Length > 0)
        {
            if (!Guid.TryParse(reference.Id, out var parsed)) throw new InvalidArgumentException($"{field}.id", "is not a UUID");
            id = await conn.QuerySingleOrDefaultAsync<Guid?>(
                "SELECT contact_id FROM contacts WHERE tenant_id = @tenant AND contact_id = @parsed AND erased_at IS NULL",
                new { tenant, parsed }, tx);
        }
        else
        {
            id = await conn.QuerySingleOrDefaultAsync<Guid?>(
                "SELECT contact_id FROM contacts WHERE tenant_id = @tenant AND external_id = @ExternalId AND erased_at IS NULL",
                new { tenant, reference.ExternalId }, tx);
        }
        return id ?? throw new NotFoundException($"Contact {(reference.Id.Length > 0 ? reference.Id : reference.ExternalId)} not found.");
    }

    private static async Task<bool> IsSuppressedAsync(NpgsqlConnection conn, NpgsqlTransaction tx, Suppressions.SuppressionKey key, string tenant, ContactRow c)
    {
        var hashes = new List<byte[]> { key.Hash(tenant, "external_id", c.ExternalId) };
        if (c.Email is not null) hashes.Add(key.Hash(tenant, "email", c.Email.ToLowerInvariant()));
        if (c.Phone is not null) hashes.Add(key.Hash(tenant, "phone", c.Phone));
        return await conn.ExecuteScalarAsync<bool>(
            "SELECT EXISTS (SELECT 1 FROM suppressions WHERE tenant_id = @tenant AND value_hash = ANY(@hashes))",
            new { tenant, hashes = hashes.ToArray() }, tx);
    }

    private static async Task<Contact> LoadContactAsync(NpgsqlConnection conn, string tenant, Guid contactId, CancellationToken ct)
    {
        using var grid = await conn.QueryMultipleAsync(new CommandDefinition($"""
            SELECT {ContactColumns} FROM contacts WHERE tenant_id = @tenant AND contact_id = @contactId;
            SELECT channel, purpose, status, source, changed_at, consented_at FROM consents
              WHERE tenant_id = @tenant AND contact_id = @contactId ORDER BY channel, purpose;
            SELECT device_id, platform, token, updated_at FROM push_tokens
              WHERE tenant_id = @tenant AND contact_id = @contactId ORDER BY device_id;
            """, new { tenant, contactId }, cancellationToken: ct));
        var row = await grid.ReadSingleOrDefaultAsync<ContactRow>() ?? throw new NotFoundException($"Contact {contactId} not found.");
        var contact = row.ToProto();
        contact.Consents.AddRange((await grid.ReadAsync<ConsentRow>()).Select(c => c.ToProto()));
        contact.PushTokens.AddRange((await grid.ReadAsync<PushTokenRow>()).Select(p => p.ToProto()));
        return contact;
    }

    /// <summary>Announces the contact's current profile (after a change that is not an upsert, such as a new push token).</summary>
    private static async Task PublishProfileAsync(NpgsqlConnection conn, NpgsqlTransaction tx, string tenant, Guid contactId, CancellationToken ct)
    {
        var row = await conn.QuerySingleAsync<ContactRow>(new CommandDefinition(
            $"SELECT {ContactColumns} FROM contacts WHERE tenant_id = @tenant AND contact_id = @contactId", new { tenant, contactId }, tx, cancellationToken: ct));
        await Outbox.EnqueueAsync(conn, tx, ToEvent(tenant, row, await LoadContactAsync(conn, tenant, contactId, ct)));
    }

    private static object Params(string tenant, ContactRow c) => new
    {
        tenant, c.ContactId, c.ExternalId, c.Name, c.Email, c.Phone, c.Locale, c.TimeZone, c.Attributes, c.Tags, c.Suppressed,
    };

    /// <summary>
    /// The event of a profile change. Its OccurredAt is the row's updated_at, written by the change's own
    /// statement under the row's lock (statement_timestamp(), the database's clock), so that versions grow in
    /// the order the changes were made and an export of the row carries the same version as its last event
    /// (projections apply both last-writer-wins by it).
    /// </summary>
    private static ContactUpserted ToEvent(string tenant, ContactRow c, Contact loaded) => new(
        tenant, c.ContactId, c.ExternalId, c.Email, c.Phone, c.Locale, c.TimeZone, c.Tags, c.Attributes, c.Suppressed,
        loaded.UpdatedAt.ToDateTimeOffset(), loaded.CreatedAt.ToDateTimeOffset(), loaded.PushTokens.Count);

    private static string? NullIfEmpty(string? s) => string.IsNullOrWhiteSpace(s) ? null : s.Trim();
}

internal sealed class ContactRow
{
    public Guid ContactId { get; set; }
    public string ExternalId { get; set; } = "";
    public string? Name { get; set; }
    public string? Email { get; set; }
    public string? Phone { get; set; }
    public string? Locale { get; set; }
    public string? TimeZone { get; set; }
    public string Attributes { get; set; } = "{}";
    public string[] Tags { get; set; } = [];
    public bool Suppressed { get; set; }
    public string Unreachable { get; set; } = "{}";
    public DateTime? ErasedAt { get; set; }
    public DateTime CreatedAt { get; set; }
    public DateTime UpdatedAt { get; set; }

    public bool SameData(ContactRow o) =>
        Name == o.Name && Email == o.Email && Phone == o.Phone && Locale == o.Locale && TimeZone == o.TimeZone
        && Tags.SequenceEqual(o.Tags)
        && JsonNode.DeepEquals(JsonNode.Parse(Attributes), JsonNode.Parse(o.Attributes));

    public Contact ToProto()
    {
        var c = new Contact
        {
            Id = ContactId.ToString(),
            ExternalId = ExternalId,
            Name = Name ?? "",
            Email = Email ?? "",
            Phone = Phone ?? "",
            Locale = Locale ?? "",
            TimeZone = TimeZone ?? "",
            Suppressed = Suppressed,
            CreatedAt = Timestamps.Of(CreatedAt),
            UpdatedAt = Timestamps.Of(UpdatedAt),
        };
        c.Tags.AddRange(Tags);
        foreach (var (key, node) in JsonNode.Parse(Attributes)!.AsObject())
            c.Attributes[key] = ContactFields.FromJson(node);
        c.Unreachable.AddRange(ReadUnreachable(Unreachable));
        return c;
    }

    /// <summary>contacts.unreachable: {"sms": {"reason": "...", "since": "..."}, ...}.</summary>
    public static IEnumerable<UnreachableChannel> ReadUnreachable(string json) =>
        JsonNode.Parse(json)!.AsObject().Select(p => new UnreachableChannel
        {
            Channel = Words.ToChannel(p.Key),
            Reason = p.Value?["reason"]?.GetValue<string>() ?? "",
            Since = p.Value?["since"] is JsonValue since && since.TryGetValue<DateTime>(out var at) ? Timestamps.Of(at.ToUniversalTime()) : null,
        }).ToList();
}

internal sealed class ConsentRow
{
    public string Channel { get; set; } = "";
    public string Purpose { get; set; } = "";
    public string Status { get; set; } = "";
    public string Source { get; set; } = "";
    public DateTime ChangedAt { get; set; }
    public DateTime? ConsentedAt { get; set; }

    /// <summary>Korea's Information and Communications Network Act: confirm marketing consent every two years.</summary>
    public static readonly TimeSpan ReconfirmEvery = TimeSpan.FromDays(730);

    public ConsentState ToProto() => new()
    {
        Channel = Words.ToChannel(Channel),
        Purpose = Words.ToPurpose(Purpose),
        Status = Words.ToStatus(Status),
        Source = Words.ToSource(Source),
        ChangedAt = Timestamps.Of(ChangedAt),
        ConsentedAt = Timestamps.OfNullable(ConsentedAt),
        ReconfirmDueAt = Timestamps.OfNullable(ConsentedAt + ReconfirmEvery),
    };
}

internal sealed class PushTokenRow
{
    public string DeviceId { get; set; } = "";
    public string Platform { get; set; } = "";
    public string Token { get; set; } = "";
    public DateTime UpdatedAt { get; set; }
    /// <summary>Set by an upsert: the device is new to the contact.</summary>
    public bool Added { get; set; }

    public PushToken ToProto() => new() { DeviceId = DeviceId, Platform = Platform, Token = Token, UpdatedAt = Timestamps.Of(UpdatedAt) };
}
