namespace Crm.Delivery.Features.Messages;

/// <summary>A row of `messages`.</summary>
public sealed class MessageRow
{
    public string TenantId { get; set; } = "";
    public Guid MessageId { get; set; }
    public string IdempotencyKey { get; set; } = "";
    public Guid ContactId { get; set; }
    public string Channel { get; set; } = "";
    public string Purpose { get; set; } = "";
    public string? CampaignId { get; set; }
    public string? Category { get; set; }
    public string? Subject { get; set; }
    public string? TextBody { get; set; }
    public string? HtmlBody { get; set; }
    public string? QuietStart { get; set; }
    public string? QuietEnd { get; set; }
    public string OnCap { get; set; } = "suppress";
    public bool IgnoreCaps { get; set; }
    public DateTime? ExpiresAt { get; set; }
    public string? ProviderAccountId { get; set; }
    public string Status { get; set; } = "";
    public string Reason { get; set; } = "";
    public string? RuleId { get; set; }
    public DateTime? NotBefore { get; set; }
    public int Attempts { get; set; }
    public int? Segments { get; set; }
    public string? ProviderMessageId { get; set; }
    public DateTime? SentAt { get; set; }
    public DateTime CreatedAt { get; set; }

    /// <summary>The channels still to try after <see cref="Channel"/>, in order.</summary>
    public string[] Fallback { get; set; } = [];
    public string? TemplateCode { get; set; }

    /// <summary>JSON object of the template's variables.</summary>
    public string? TemplateParameters { get; set; }

    public const string Columns = """
        tenant_id, message_id, idempotency_key, contact_id, channel, purpose, campaign_id, category, subject, text_body, html_body,
        quiet_start, quiet_end, on_cap, ignore_caps, expires_at, provider_account_id, status, reason, rule_id, not_before,
        attempts, segments, provider_message_id, sent_at, created_at, fallback, template_code, template_parameters::text AS template_parameters
        """;
}
