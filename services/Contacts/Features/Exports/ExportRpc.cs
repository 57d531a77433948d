using Crm.BuildingBlocks.Data;
using Crm.BuildingBlocks.Errors;
using Crm.BuildingBlocks.Tenancy;
using Crm.Contacts.Features.Contacts;
using Crm.Contacts.V1;
using Dapper;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Npgsql;

namespace Crm.Contacts.Features;

/// <summary>
/// Backfill exports: what a projection of Contacts' data needs (Segmentation's profiles, consents, orders
/// with lines, engagement), streamed one page per message, keyset-paged by the table's primary key. One
/// stream reads one snapshot (REPEATABLE READ, read-only, taken when it starts), so a row that changes
/// while the stream runs is sent once, as it was; every change after the snapshot reaches the consumer
/// as an event from the outbox instead (written in the change's own transaction, so after the snapshot).
/// Erased contacts are left out: their profile is gone, their consents deleted, and their orders and
/// engagement no longer name them.
/// </summary>
public sealed partial class ContactsGrpcService
{
    public const int DefaultExportPageSize = 1000;
    public const int MaxExportPageSize = 5000;

    public override Task ExportContacts(ExportRequest request, IServerStreamWriter<ExportContactsResponse> responseStream, ServerCallContext context) =>
        ExportAsync(request, context, responseStream, ParseGuid, async (conn, tenant, after, limit) =>
        {
            var rows = (await conn.QueryAsync<ExportContactRow>("""
                SELECT c.contact_id, c.external_id, c.locale, c.time_zone, c.tags, c.attributes::text AS attributes,
                       c.email IS NOT NULL AS has_email, c.phone IS NOT NULL AS has_phone,
                       (SELECT count(*) FROM push_tokens p WHERE p.tenant_id = @tenant AND p.contact_id = c.contact_id)::int AS push_tokens,
                       c.suppressed, c.unreachable::text AS unreachable, c.created_at, c.updated_at
                FROM contacts c
                WHERE c.tenant_id = @tenant AND c.erased_at IS NULL AND (@after::uuid IS NULL OR c.contact_id > @after)
                ORDER BY c.contact_id
                LIMIT @limit
                """, new { tenant, after = (Guid?)after, limit })).AsList();
            var page = new ExportContactsResponse();
            page.Contacts.AddRange(rows.Select(r => r.ToProto()));
            return (page, rows.Count, rows.Count > 0 ? rows[^1].ContactId.ToString() : null);
        }, (page, token, at) => { page.NextPageToken = token; page.SnapshotAt = at; });

    public override Task ExportConsents(ExportRequest request, IServerStreamWriter<ExportConsentsResponse> responseStream, ServerCallContext context) =>
        ExportAsync(request, context, responseStream, ParseConsentKey, async (conn, tenant, after, limit) =>
        {
            var rows = (await conn.QueryAsync<ContactKey, ConsentRow, (Guid ContactId, ConsentRow Consent)>("""
                SELECT contact_id, channel, purpose, status, source, changed_at, consented_at FROM consents
                WHERE tenant_id = @tenant
                  AND (@afterContact::uuid IS NULL OR (contact_id, channel, purpose) > (@afterContact, @afterChannel, @afterPurpose))
                ORDER BY contact_id, channel, purpose
                LIMIT @limit
                """, (k, c) => (k.ContactId, c), new
            {
                tenant, afterContact = after?.Contact, afterChannel = after?.Channel, afterPurpose = after?.Purpose, limit,
            }, splitOn: "channel")).AsList();
            var page = new ExportConsentsResponse();
            page.Consents.AddRange(rows.Select(r => new ExportedConsent { ContactId = r.ContactId.ToString(), Consent = r.Consent.ToProto() }));
            return (page, rows.Count, rows.Count > 0 ? $"{rows[^1].ContactId}|{rows[^1].Consent.Channel}|{rows[^1].Consent.Purpose}" : null);
        }, (page, token, at) => { page.NextPageToken = token; page.SnapshotAt = at; });

    public override Task ExportOrders(ExportRequest request, IServerStreamWriter<ExportOrdersResponse> responseStream, ServerCallContext context) =>
        ExportAsync(request, context, responseStream, key => key, async (conn, tenant, after, limit) =>
        {
            var rows = (await conn.QueryAsync<OrderRow>("""
                SELECT order_id, contact_id, occurred_at, utc_offset_minutes, currency, total, status, lines::text AS lines
                FROM orders
                WHERE tenant_id = @tenant AND contact_id IS NOT NULL AND (@after::text IS NULL OR order_id > @after)
                ORDER BY order_id
                LIMIT @limit
                """, new { tenant, after, limit })).AsList();
            var page = new ExportOrdersResponse();
            page.Orders.AddRange(rows.Select(r => r.ToProto(lineNames: false)));
            return (page, rows.Count, rows.Count > 0 ? rows[^1].OrderId : null);
        }, (page, token, at) => { page.NextPageToken = token; page.SnapshotAt = at; });

    public override Task ExportEngagement(ExportRequest request, IServerStreamWriter<ExportEngagementResponse> responseStream, ServerCallContext context) =>
        ExportAsync(request, context, responseStream, key => key, async (conn, tenant, after, limit) =>
        {
            var rows = (await conn.QueryAsync<ExportEngagementRow>("""
                SELECT event_id, contact_id, type, name, channel, message_id, campaign_id, occurred_at, properties::text AS properties
                FROM engagement_events
                WHERE tenant_id = @tenant AND contact_id IS NOT NULL AND (@after::text IS NULL OR event_id > @after)
                ORDER BY event_id
                LIMIT @limit
                """, new { tenant, after, limit })).AsList();
            var page = new ExportEngagementResponse();
            page.Events.AddRange(rows.Select(r => r.ToProto()));
            return (page, rows.Count, rows.Count > 0 ? rows[^1].EventId : null);
        }, (page, token, at) => { page.NextPageToken = token; page.SnapshotAt = at; });

    /// <summary>
    /// The stream: the caller's tenant, one snapshot transaction, then pages of at most the page size until
    /// a short one. The response headers go out as soon as the snapshot is taken, so a caller that opens
    /// several exports knows each has its snapshot (and was authorized) before reading any of them.
    /// </summary>
    private async Task ExportAsync<TKey, TPage>(ExportRequest request, ServerCallContext context, IServerStreamWriter<TPage> stream,
        Func<string, TKey> parseKey,
        Func<NpgsqlConnection, string, TKey?, int, Task<(TPage Page, int Count, string? LastKey)>> readPage,
        Action<TPage, string, Timestamp> finish)
    {
        var caller = context.Caller(Scope.ContactsRead);
        var ct = context.CancellationToken;
        if (request.PageSize < 0) throw new InvalidArgumentException("page_size", "must not be negative");
        var pageSize = request.PageSize == 0 ? DefaultExportPageSize : Math.Min(request.PageSize, MaxExportPageSize);
        var after = PageToken.Decode(request.PageToken) is { } token ? parseKey(token) : default;

        await using var scope = await _db.BeginSnapshotAsync(caller.TenantId, ct);
        var conn = scope.Connection;
        // now() is the transaction's start; the snapshot was taken by its first statement, just before.
        var snapshotAt = Timestamps.Of(await conn.QuerySingleAsync<DateTime>("SELECT now()"));
        await context.WriteResponseHeadersAsync(new Metadata());
        var lastToken = request.PageToken;
        while (true)
        {
            var (page, count, lastKey) = await readPage(conn, caller.TenantId, after, pageSize);
            if (lastKey is not null)
            {
                lastToken = PageToken.Encode(lastKey);
                after = parseKey(lastKey);
            }
            finish(page, lastToken, snapshotAt);
            await stream.WriteAsync(page, ct);
            if (count < pageSize) return;
        }
    }

    private static Guid? ParseGuid(string key) =>
        Guid.TryParse(key, out var id) ? id : throw new InvalidArgumentException("page_token", "is not a token returned by a previous call");

    private static ConsentKey ParseConsentKey(string key)
    {
        var parts = key.Split('|');
        if (parts.Length != 3 || !Guid.TryParse(parts[0], out var contact))
            throw new InvalidArgumentException("page_token", "is not a token returned by a previous call");
        return new ConsentKey(contact, parts[1], parts[2]);
    }

    private sealed record ConsentKey(Guid Contact, string Channel, string Purpose);

    private sealed class ContactKey
    {
        public Guid ContactId { get; set; }
    }
}

internal sealed class ExportContactRow
{
    public Guid ContactId { get; set; }
    public string ExternalId { get; set; } = "";
    public string? Locale { get; set; }
    public string? TimeZone { get; set; }
    public string[] Tags { get; set; } = [];
    public string Attributes { get; set; } = "{}";
    public bool HasEmail { get; set; }
    public bool HasPhone { get; set; }
    public int PushTokens { get; set; }
    public bool Suppressed { get; set; }
    public string Unreachable { get; set; } = "{}";
    public DateTime CreatedAt { get; set; }
    public DateTime UpdatedAt { get; set; }

    public ExportedContact ToProto()
    {
        var c = new ExportedContact
        {
            ContactId = ContactId.ToString(),
            ExternalId = ExternalId,
            Locale = Locale ?? "",
            TimeZone = TimeZone ?? "",
            AttributesJson = Attributes,
            HasEmail = HasEmail,
            HasPhone = HasPhone,
            PushTokens = PushTokens,
            Suppressed = Suppressed,
            CreatedAt = Timestamps.Of(CreatedAt),
            UpdatedAt = Timestamps.Of(UpdatedAt),
        };
        c.Tags.AddRange(Tags);
        c.Unreachable.AddRange(ContactRow.ReadUnreachable(Unreachable));
        return c;
    }
}

internal sealed class ExportEngagementRow
{
    public string EventId { get; set; } = "";
    public Guid ContactId { get; set; }
    public string Type { get; set; } = "";
    public string? Name { get; set; }
    public string? Channel { get; set; }
    public string? MessageId { get; set; }
    public string? CampaignId { get; set; }
    public DateTime OccurredAt { get; set; }
    public string Properties { get; set; } = "{}";

    public EngagementEvent ToProto() => new()
    {
        EventId = EventId,
        Contact = new ContactRef { Id = ContactId.ToString() },
        Type = Words.ToEngagementType(Type),
        Name = Name ?? "",
        Channel = Channel is null ? V1.Channel.Unspecified : Words.ToChannel(Channel),
        MessageId = MessageId ?? "",
        CampaignId = CampaignId ?? "",
        OccurredAt = Timestamps.Of(OccurredAt),
        Properties = JsonParser.Default.Parse<Struct>(Properties),
    };
}
