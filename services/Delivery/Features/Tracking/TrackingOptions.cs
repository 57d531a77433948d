namespace Crm.Delivery.Features.Tracking;

/// <summary>Open and click tracking and the platform's unsubscribe link (Delivery:Tracking).</summary>
public sealed class TrackingOptions
{
    /// <summary>
    /// The public base URL tracking and unsubscribe links point at (https://t.example.com): served by this service
    /// at /t/… and /u/…, routed there by the gateway. Empty: no tracking, and no platform unsubscribe link (a
    /// marketing email then needs the workspace's own unsubscribe URL or address).
    /// </summary>
    public string BaseUrl { get; set; } = "";

    /// <summary>Base64 of 32 random bytes, the HMAC-SHA256 key of the links' tokens. Required with <see cref="BaseUrl"/>.</summary>
    public string SigningKey { get; set; } = "";

    /// <summary>
    /// An open this soon after the message was sent is taken as a machine's (a privacy proxy fetching the images as
    /// the mail arrives), whatever its user agent.
    /// </summary>
    public TimeSpan MachineOpenWindow { get; set; } = TimeSpan.FromSeconds(10);
}
