using Crm.BuildingBlocks.Data;
using Crm.BuildingBlocks.Errors;
using Crm.BuildingBlocks.Outbox;
using Crm.BuildingBlocks.Tenancy;
using Crm.Contacts.Features.Contacts;
using Crm.Contracts.Contacts;
using Crm.Contacts.V1;
using Dapper;
using Grpc.Core;

namespace Crm.Contacts.Features;

public sealed partial class ContactsGrpcService
{
    /// <summary>Records a consent decision (see <see cref="Consent.ConsentLedger"/>).</summary>
    public override async Task<SetConsentResponse> SetConsent(SetConsentRequest request, ServerCallContext context)
    {
        var caller = context.Caller(Scope.ContactsWrite);
        var ct = context.CancellationToken;
        var v = new Validation();
        if (request.Channel == Channel.Unspecified) v.Add("channel", "is required");
        if (request.Purpose == Purpose.Unspecified) v.Add("purpose", "is required");
        if (request.Status == ConsentStatus.Unspecified) v.Add("status", "is required");
        if (request.Source == ConsentSource.Unspecified) v.Add("source", "is required");
        if (request.Evidence.Length > 4000) v.Add("evidence", "must be at most 4000 characters");
        var occurredAt = request.OccurredAt?.ToDateTime() ?? DateTime.UtcNow;
        if (occurredAt > DateTime.UtcNow.AddMinutes(5)) v.Add("occurred_at", "is in the future");
        v.ThrowIfInvalid();

        var tenant = caller.TenantId;
        await using var scope = await _db.BeginAsync(tenant, ct);
        var (conn, tx) = scope;
        var contactId = await ResolveAsync(conn, tx, tenant, request.Contact, "contact");
        var (current, changed) = await Consent.ConsentLedger.RecordAsync(conn, tx, tenant, new Consent.ConsentLedger.Decision(
            contactId, Words.Of(request.Channel), Words.Of(request.Purpose), Words.Of(request.Status), Words.Of(request.Source),
            request.Evidence, occurredAt));
        await tx.CommitAsync(ct);
        return new SetConsentResponse { Consent = current.ToProto(), Changed = changed };
    }

    public override async Task<ListConsentHistoryResponse> ListConsentHistory(ListConsentHistoryRequest request, ServerCallContext context)
    {
        var caller = context.Caller(Scope.ContactsRead);
        var pageSize = PageToken.Size(request.PageSize);
        long? after = PageToken.Decode(request.PageToken) is { } s && long.TryParse(s, out var id) ? id : null;
        await using var scope = await _db.BeginAsync(caller.TenantId, context.CancellationToken);
        var conn = scope.Connection;
        var contactId = await ResolveAsync(conn, null, caller.TenantId, request.Contact, "contact");
        var rows = (await conn.QueryAsync<ConsentHistoryRow>("""
            SELECT id, channel, purpose, status, source, evidence, occurred_at, recorded_at FROM consent_history
            WHERE tenant_id = @tenant AND contact_id = @contactId AND (@after::bigint IS NULL OR id > @after)
            ORDER BY id LIMIT @limit
            """, new { tenant = caller.TenantId, contactId, after, limit = pageSize + 1 })).AsList();
        var response = new ListConsentHistoryResponse();
        response.Entries.AddRange(rows.Take(pageSize).Select(r => new ConsentHistoryEntry
        {
            Id = r.Id,
            Channel = Words.ToChannel(r.Channel),
            Purpose = Words.ToPurpose(r.Purpose),
            Status = Words.ToStatus(r.Status),
            Source = Words.ToSource(r.Source),
            Evidence = r.Evidence,
            OccurredAt = Timestamps.Of(r.OccurredAt),
            RecordedAt = Timestamps.Of(r.RecordedAt),
        }));
        if (rows.Count > pageSize) response.NextPageToken = PageToken.Encode(rows[pageSize - 1].Id.ToString(System.Globalization.CultureInfo.InvariantCulture));
        return response;
    }

    public override async Task<RegisterPushTokenResponse> RegisterPushToken(RegisterPushTokenRequest request, ServerCallContext context)
    {
        var caller = context.Caller(Scope.ContactsWrite);
        var v = new Validation();
        if (!ContactFields.IsValidKey(request.DeviceId, 256)) v.Add("device_id", "is required (1 to 256 characters)");
        if (request.Platform is not ("ios" or "android" or "web")) v.Add("platform", "must be ios, android or web");
        if (request.Token.Length is 0 or > 4096) v.Add("token", "is required (at most 4096 characters)");
        v.ThrowIfInvalid();
        var ct = context.CancellationToken;
        var tenant = caller.TenantId;
        await using var scope = await _db.BeginAsync(tenant, ct);
        var (conn, tx) = scope;
        var contactId = await ResolveAsync(conn, tx, tenant, request.Contact, "contact");
        // The contact's row is locked first, so that the count of its tokens and the version of its
        // profile move together with the profile's own changes (see ToEvent).
        await conn.ExecuteAsync("SELECT 1 FROM contacts WHERE tenant_id = @tenant AND contact_id = @contactId FOR UPDATE", new { tenant, contactId }, tx);
        var row = await conn.QuerySingleAsync<PushTokenRow>("""
            INSERT INTO push_tokens (tenant_id, contact_id, device_id, platform, token)
            VALUES (@tenant, @contactId, @DeviceId, @Platform, @Token)
            ON CONFLICT (tenant_id, contact_id, device_id) DO UPDATE SET
                platform = excluded.platform, token = excluded.token, updated_at = now()
            RETURNING device_id, platform, token, updated_at, (xmax = 0) AS added
            """, new { tenant, contactId, request.DeviceId, request.Platform, request.Token }, tx);
        if (row.Added)
        {
            // A new device changes the contact's count of push tokens, which projections keep ("has a push token").
            await conn.ExecuteAsync("UPDATE contacts SET updated_at = statement_timestamp() WHERE tenant_id = @tenant AND contact_id = @contactId",
                new { tenant, contactId }, tx);
            await PublishProfileAsync(conn, tx, tenant, contactId, ct);
        }
        await scope.CommitAsync(ct);
        return new RegisterPushTokenResponse { PushToken = row.ToProto() };
    }
}

internal sealed class ConsentHistoryRow
{
    public long Id { get; set; }
    public string Channel { get; set; } = "";
    public string Purpose { get; set; } = "";
    public string Status { get; set; } = "";
    public string Source { get; set; } = "";
    public string Evidence { get; set; } = "";
    public DateTime OccurredAt { get; set; }
    public DateTime RecordedAt { get; set; }
}
