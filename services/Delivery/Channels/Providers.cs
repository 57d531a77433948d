namespace Crm.Delivery.Channels;

/// <summary>A tenant's provider account as the senders need it: its settings and its decrypted secret.</summary>
/// <param name="Settings">Each provider's own (see its account reader: TwilioAccount, SmtpAccount, KakaoAccount).</param>
/// <param name="Secret">The provider's credential (Twilio auth token, SMTP password, NHN Cloud secret key), decrypted.</param>
public sealed record ProviderAccountConfig(string AccountId, string Kind, IReadOnlyDictionary<string, string> Settings, string? Secret)
{

    /// <summary>A setting, trimmed, or null when absent or blank.</summary>
    public string? Setting(string name) =>
        Settings.TryGetValue(name, out var value) && !string.IsNullOrWhiteSpace(value) ? value.Trim() : null;
}

/// <summary>Text from a provider (an error message, an SMTP reply) as far as it is stored and returned to a tenant.</summary>
public static class ProviderText
{
    public const int MaxLength = 500;

    /// <summary>At most <see cref="MaxLength"/> characters, ending with "…" when cut (never inside a surrogate pair).</summary>
    public static string Bound(string text)
    {
        if (text.Length <= MaxLength) return text;
        var keep = MaxLength - 1;
        if (char.IsHighSurrogate(text[keep - 1])) keep--;
        return string.Concat(text.AsSpan(0, keep), "…");
    }
}

public enum SendOutcomeKind
{
    /// <summary>The provider accepted the message.</summary>
    Sent,

    /// <summary>Worth trying again later (429, 5xx, connection refused) after the sender's own retries ran out.</summary>
    Transient,

    /// <summary>Never worth retrying (invalid number, unsubscribed recipient, SMTP 5xx).</summary>
    Permanent,

    /// <summary>The request went out but no answer came back: the provider may have accepted it, so it is not retried.</summary>
    Unconfirmed,
}

/// <param name="RecipientUnreachable">The address itself is bad or opted out at the provider (Twilio 21610/21211, SMTP 550 mailbox):
/// Contacts is told so the channel is marked.</param>
/// <param name="RetryAfter">For Transient: when the provider asked to be called again (Retry-After), if it said.</param>
public sealed record SendOutcome(
    SendOutcomeKind Kind,
    string Reason,
    string? ProviderMessageId = null,
    int? ProviderErrorCode = null,
    bool RecipientUnreachable = false,
    TimeSpan? RetryAfter = null,
    int Attempts = 1);

/// <summary>Bounded exponential back-off with jitter for the senders' in-call retries.</summary>
public sealed class RetryOptions
{
    public int MaxAttempts { get; set; } = 4;
    public TimeSpan BaseDelay { get; set; } = TimeSpan.FromMilliseconds(200);
    public TimeSpan MaxDelay { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>A Retry-After longer than this ends the in-call retries (the pipeline defers the message instead).</summary>
    public TimeSpan MaxRetryAfter { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Per-request timeout; a request that times out after being sent is Unconfirmed, not retried.</summary>
    public TimeSpan RequestTimeout { get; set; } = TimeSpan.FromSeconds(10);
}
