namespace Crm.Delivery.Features.Tracking;

/// <summary>The deployment's tracking and unsubscribe links (Delivery:Tracking:BaseUrl), signed with its key.</summary>
public sealed class TrackingLinks
{
    private readonly string _base;

    public TrackingLinks(DeliveryOptions options)
    {
        _base = options.Tracking.BaseUrl.TrimEnd('/');
        // The validator has checked the key whenever a base URL is set.
        Tokens = _base.Length > 0 ? new TrackingTokens(Convert.FromBase64String(options.Tracking.SigningKey)) : null;
    }

    /// <summary>Null when the deployment has no tracking base URL: no tracking and no platform unsubscribe link.</summary>
    public TrackingTokens? Tokens { get; }

    public bool Enabled => Tokens is not null;

    public string Open(string tenant, Guid messageId) => Url("t/o", new TrackingToken(TrackingTokenKind.Open, tenant, messageId));

    public string Click(string tenant, Guid messageId, int linkIndex, string url) =>
        Url("t/c", new TrackingToken(TrackingTokenKind.Click, tenant, messageId, linkIndex, url));

    public string Unsubscribe(string tenant, Guid messageId) => Url("u", new TrackingToken(TrackingTokenKind.Unsubscribe, tenant, messageId));

    private string Url(string path, TrackingToken token) =>
        $"{_base}/{path}/{(Tokens ?? throw new InvalidOperationException("Delivery:Tracking:BaseUrl is not set")).Create(token)}";
}
