using Crm.BuildingBlocks.Data;
using Crm.BuildingBlocks.Errors;
using Crm.BuildingBlocks.Tenancy;
using Crm.Contracts.Delivery;
using Crm.Delivery.Features.Messages;
using Crm.Delivery.V1;
using Dapper;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;

namespace Crm.Delivery.Features;

public sealed partial class DeliveryGrpcService
{
    private const int MaxBatch = 1000;

    /// <summary>Accepts the message and runs it through the pipeline before answering.</summary>
    public override async Task<Message> SendMessage(SendMessageRequest request, ServerCallContext context)
    {
        var caller = context.Caller(Scope.DeliverySend);
        var v = new Validation();
        var r = ToRequest(request, "", v);
        v.ThrowIfInvalid();
        RequireAdminToIgnoreCaps(caller, [r], "");
        return (await SendAsync(caller, [r], context.CancellationToken))[0];
    }

    public override async Task<SendMessagesResponse> SendMessages(SendMessagesRequest request, ServerCallContext context)
    {
        var caller = context.Caller(Scope.DeliverySend);
        var v = new Validation();
        if (request.Messages.Count is 0 or > MaxBatch) v.Add("messages", $"send 1 to {MaxBatch} messages a call");
        var requests = request.Messages.Select((m, i) => ToRequest(m, $"messages[{i}].", v)).ToList();
        v.ThrowIfInvalid();
        RequireAdminToIgnoreCaps(caller, requests, "messages[{0}].");
        var response = new SendMessagesResponse();
        response.Messages.AddRange(await SendAsync(caller, requests, context.CancellationToken));
        return response;
    }

    public override async Task<Message> GetMessage(GetMessageRequest request, ServerCallContext context)
    {
        var caller = context.Caller(Scope.DeliveryRead);
        if (!Guid.TryParse(request.MessageId, out var id)) throw new InvalidArgumentException("message_id", "is not a UUID");
        return await LoadAsync(caller.TenantId, id, context.CancellationToken) ?? throw new NotFoundException($"Message {id} not found.");
    }

    public override async Task<ListMessagesResponse> ListMessages(ListMessagesRequest request, ServerCallContext context)
    {
        var caller = context.Caller(Scope.DeliveryRead);
        var v = new Validation();
        Guid? contactId = null;
        if (request.ContactId.Length > 0)
        {
            if (Guid.TryParse(request.ContactId, out var c)) contactId = c;
            else v.Add("contact_id", "is not a UUID");
        }
        if (contactId is null && request.CampaignId.Length == 0) v.Add("contact_id", "name a contact or a campaign");
        v.ThrowIfInvalid();
        var pageSize = PageToken.Size(request.PageSize);
        DateTime? beforeAt = null;
        Guid? beforeId = null;
        if (PageToken.Decode(request.PageToken) is { } token)
        {
            var parts = token.Split('|');
            if (parts.Length != 2 || !long.TryParse(parts[0], out var ticks) || !Guid.TryParse(parts[1], out var last))
                throw new InvalidArgumentException("page_token", "is not a token returned by a previous call");
            beforeAt = new DateTime(ticks, DateTimeKind.Utc);
            beforeId = last;
        }
        await using var scope = await _db.BeginAsync(caller.TenantId, context.CancellationToken);
        var conn = scope.Connection;
        var rows = (await conn.QueryAsync<MessageRow>($"""
            SELECT {MessageRow.Columns} FROM messages
            WHERE tenant_id = @tenant
              AND (@contactId::uuid IS NULL OR contact_id = @contactId)
              AND (@campaignId::text IS NULL OR campaign_id = @campaignId)
              AND (@beforeAt::timestamptz IS NULL OR (created_at, message_id) < (@beforeAt, @beforeId))
            ORDER BY created_at DESC, message_id DESC
            LIMIT @limit
            """, new
        {
            tenant = caller.TenantId, contactId, campaignId = request.CampaignId.Length > 0 ? request.CampaignId : null,
            beforeAt, beforeId, limit = pageSize + 1,
        })).AsList();
        var response = new ListMessagesResponse();
        response.Messages.AddRange(rows.Take(pageSize).Select(r => ToProto(r, [])));
        if (rows.Count > pageSize)
        {
            var last = rows[pageSize - 1];
            response.NextPageToken = PageToken.Encode($"{last.CreatedAt.Ticks}|{last.MessageId}");
        }
        return response;
    }

    /// <summary>
    /// Skipping the frequency caps (marketing caps and the transactional safety cap) is the workspace
    /// administrator's decision, not any sender's: it needs the delivery.admin scope.
    /// </summary>
    private static void RequireAdminToIgnoreCaps(CallerIdentity caller, IReadOnlyList<DeliveryRequest> requests, string pathFormat)
    {
        if (caller.Has(Scope.DeliveryAdmin)) return;
        for (var i = 0; i < requests.Count; i++)
            if (requests[i].IgnoreCaps)
                throw new RpcException(new Status(StatusCode.PermissionDenied,
                    $"{string.Format(System.Globalization.CultureInfo.InvariantCulture, pathFormat, i)}ignore_caps needs the '{Scope.DeliveryAdmin}' scope"));
    }

    /// <summary>Accepts the messages and runs them through the pipeline (as one batch) before answering.</summary>
    private async Task<IReadOnlyList<Message>> SendAsync(CallerIdentity caller, IReadOnlyList<DeliveryRequest> requests, CancellationToken ct)
    {
        var tenant = caller.TenantId;
        var (claimed, scheduled, repeats) = await _intake.AcceptManyAsync(tenant, requests, _pipeline.Lease, ct,
            ignoreCapsRequestedBy: caller.Subject.Length > 0 ? caller.Subject : "an unnamed caller");
        await _pipeline.ProcessClaimedAsync(claimed);
        if (repeats.Count > 0) await _pipeline.ProcessAsync(tenant, [.. repeats.Values], ct);
        var ids = claimed.Concat(scheduled).ToDictionary(m => m.IdempotencyKey, m => m.MessageId, StringComparer.Ordinal);
        foreach (var (key, id) in repeats) ids[key] = id;
        var messages = new List<Message>(requests.Count);
        foreach (var r in requests) messages.Add((await LoadAsync(tenant, ids[r.IdempotencyKey], ct))!);
        return messages;
    }

    private DeliveryRequest ToRequest(SendMessageRequest m, string path, Validation v)
    {
        Guid.TryParse(m.ContactId, out var contactId);
        if (m.ContactId.Length > 0 && contactId == Guid.Empty) v.Add($"{path}contact_id", "is not a UUID");
        var r = new DeliveryRequest(
            m.IdempotencyKey, contactId,
            _channels.NameOf(m.Channel),
            m.Purpose switch { V1.Purpose.Marketing => "marketing", V1.Purpose.Transactional => "transactional", _ => "" },
            NullIfEmpty(m.CampaignId), NullIfEmpty(m.Category), NullIfEmpty(m.Subject), NullIfEmpty(m.TextBody), NullIfEmpty(m.HtmlBody),
            m.IgnoreCaps, m.OnCap == CapAction.Defer ? "defer" : "suppress", m.ExpiresAt?.ToDateTimeOffset(),
            NullIfEmpty(m.QuietStart), NullIfEmpty(m.QuietEnd), NullIfEmpty(m.ProviderAccountId), m.SendAt?.ToDateTimeOffset(),
            m.Fallback.Count > 0 ? m.Fallback.Select(_channels.NameOf).ToList() : null, NullIfEmpty(m.TemplateCode),
            m.TemplateParameters.Count > 0 ? m.TemplateParameters.ToDictionary() : null);
        MessageIntake.Validate(r, path, v, _channels);
        return r;
    }

    private async Task<Message?> LoadAsync(string tenant, Guid id, CancellationToken ct)
    {
        await using var scope = await _db.BeginAsync(tenant, ct);
        var conn = scope.Connection;
        var row = await conn.QuerySingleOrDefaultAsync<MessageRow>(
            $"SELECT {MessageRow.Columns} FROM messages WHERE tenant_id = @tenant AND message_id = @id", new { tenant, id });
        if (row is null) return null;
        // The timeline starts with the message's creation and, once sent, has the send at sent_at; every
        // other change is a row of message_events (a send is stored only when it has something to say).
        var events = (await conn.QueryAsync<(string Status, string Reason, DateTime At)>(
            "SELECT status, reason, at FROM message_events WHERE tenant_id = @tenant AND message_id = @id ORDER BY id", new { tenant, id })).ToList();
        if (row.SentAt is { } sentAt && !events.Any(e => e.Status == "sent"))
            events.Insert(events.Count(e => e.At <= sentAt), ("sent", "", sentAt));
        return ToProto(row, events.Prepend(("accepted", "", row.CreatedAt)));
    }

    private Message ToProto(MessageRow r, IEnumerable<(string Status, string Reason, DateTime At)> timeline)
    {
        var m = new Message
        {
            MessageId = r.MessageId.ToString(),
            IdempotencyKey = r.IdempotencyKey,
            ContactId = r.ContactId.ToString(),
            Channel = _channels.ProtoOf(r.Channel),
            Purpose = r.Purpose == "marketing" ? V1.Purpose.Marketing : V1.Purpose.Transactional,
            CampaignId = r.CampaignId ?? "",
            Status = StatusOf(r.Status),
            Reason = r.Reason,
            RuleId = r.RuleId ?? "",
            NotBefore = r.NotBefore is { } nb ? Timestamp.FromDateTime(DateTime.SpecifyKind(nb, DateTimeKind.Utc)) : null,
            Segments = r.Segments ?? 0,
            ProviderMessageId = r.ProviderMessageId ?? "",
            Attempts = r.Attempts,
            CreatedAt = Timestamp.FromDateTime(DateTime.SpecifyKind(r.CreatedAt, DateTimeKind.Utc)),
        };
        m.Timeline.AddRange(timeline.Where(e => e.Status != "sending").Select(e => new StatusChange
        {
            Status = StatusOf(e.Status), Reason = e.Reason, At = Timestamp.FromDateTime(DateTime.SpecifyKind(e.At, DateTimeKind.Utc)),
        }));
        return m;
    }

    /// <summary>"sending" (the attempt is under way) shows as accepted: it has not reached a provider answer yet.</summary>
    private static MessageStatus StatusOf(string s) => s switch
    {
        "accepted" or "sending" => MessageStatus.Accepted,
        "deferred" => MessageStatus.Deferred,
        "sent" => MessageStatus.Sent,
        "delivered" => MessageStatus.Delivered,
        "failed" => MessageStatus.Failed,
        "suppressed" => MessageStatus.Suppressed,
        _ => MessageStatus.Unspecified,
    };

    private static string? NullIfEmpty(string s) => s.Length == 0 ? null : s;
}
