namespace Crm.Delivery.Channels.Kakao;

/// <summary>
/// An NHN Cloud KakaoTalk Bizmessage account: settings <c>app_key</c> (the project's app key), <c>sender_key</c>
/// (the KakaoTalk channel's sender profile key), optional <c>base_url</c> (default
/// https://api-alimtalk.cloud.toast.com; the loopback fake in tests and the demo); the secret is the secret
/// key (X-Secret-Key), stored encrypted like every provider secret.
/// </summary>
internal sealed record KakaoAccount(Uri BaseUri, string AppKey, string SenderKey, string SecretKey)
{
    private static readonly Uri DefaultBaseUri = new("https://api-alimtalk.cloud.toast.com/");

    public static (KakaoAccount? Account, string? Problem) Read(ProviderAccountConfig config)
    {
        var appKey = config.Setting("app_key");
        if (appKey is null) return (null, "no app_key setting");
        var senderKey = config.Setting("sender_key");
        if (senderKey is null) return (null, "no sender_key setting");
        if (string.IsNullOrEmpty(config.Secret)) return (null, "no secret key (secret)");
        var baseUri = DefaultBaseUri;
        if (config.Setting("base_url") is { } baseUrl
            && !Uri.TryCreate(baseUrl.EndsWith('/') ? baseUrl : baseUrl + "/", UriKind.Absolute, out baseUri))
            return (null, $"base_url '{baseUrl}' is not an absolute URL");
        return (new KakaoAccount(baseUri, appKey, senderKey, config.Secret), null);
    }

    /// <summary>AlimTalk (an approved template) or FriendTalk (free text, advertising) send URL.</summary>
    public Uri MessagesUri(bool friendTalk) =>
        new(BaseUri, $"{(friendTalk ? "friendtalk" : "alimtalk")}/v2.3/appkeys/{Uri.EscapeDataString(AppKey)}/messages");
}
