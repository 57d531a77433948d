using System.Collections.Concurrent;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using Crm.Delivery.Channels.Kakao;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace Crm.Fakes.Kakao;

/// <summary>
/// A real HTTP/1.1 server (Kestrel on 127.0.0.1) implementing NHN Cloud KakaoTalk Bizmessage's send API
/// (v2.3): <c>POST /alimtalk/v2.3/appkeys/{appkey}/messages</c> (senderKey, templateCode, recipientList of
/// recipientNo + templateParameter) and <c>POST /friendtalk/v2.3/appkeys/{appkey}/messages</c> (recipientList of
/// recipientNo + content + isAd), with X-Secret-Key, X-NC-API-IDEMPOTENCY-KEY (a repeat within ten minutes
/// answers -1005), at most 1,000 recipients. The answer is NHN's envelope: header {resultCode, resultMessage,
/// isSuccessful} and message {requestId, sendResults[{recipientSeq, recipientNo, resultCode, resultMessage}]}.
/// Records every request; <see cref="SetRecipient"/> makes a number "not a KakaoTalk user" or "blocked".
/// <see cref="SendResultCallbackAsync"/> posts a signed result webhook as the service expects it.
/// </summary>
public sealed class FakeKakaoServer : IAsyncDisposable
{
    public const string DefaultAppKey = "fakeAppKey0123";
    public const string DefaultSecretKey = "fakeSecretKey0123456789";
    public const string DefaultSenderKey = "fakeSenderKey0123456789abcdef";

    /// <summary>KakaoTalk's per-recipient codes the fake answers with.</summary>
    public const int BlockedCode = 3018, NotAUserCode = 3019;

    private readonly RecordLog<KakaoRequest> _requests = new();
    private readonly ConcurrentDictionary<string, KakaoRecipientBehavior> _recipients = new();
    private readonly ConcurrentDictionary<string, bool> _idempotencyKeys = new();
    private readonly HttpClient _callbackClient = new() { Timeout = TimeSpan.FromSeconds(10) };
    private readonly int _port;
    private WebApplication? _app;
    private Uri? _baseUri;
    private long _requestIds;

    public FakeKakaoServer(string appKey = DefaultAppKey, string secretKey = DefaultSecretKey, string senderKey = DefaultSenderKey, int port = 0)
    {
        AppKey = appKey;
        SecretKey = secretKey;
        SenderKey = senderKey;
        _port = port;
    }

    public string AppKey { get; }

    public string SecretKey { get; }

    public string SenderKey { get; }

    public Uri BaseUri => _baseUri ?? throw new InvalidOperationException("Call StartAsync first.");

    /// <summary>Every request received, whatever its answer.</summary>
    public IReadOnlyList<KakaoRequest> Requests => _requests.Snapshot();

    /// <summary>Recipients whose message was accepted (resultCode 0).</summary>
    public IReadOnlyList<KakaoRecipient> Delivered => Requests.SelectMany(r => r.Recipients).Where(r => r.ResultCode == 0).ToList();

    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
        builder.WebHost.UseKestrelCore();
        builder.Services.AddRoutingCore();
        var app = builder.Build();
        app.Urls.Add($"http://127.0.0.1:{_port}");
        app.MapPost("/alimtalk/v2.3/appkeys/{appKey}/messages", (string appKey, HttpRequest request) => SendAsync("alimtalk", appKey, request));
        app.MapPost("/friendtalk/v2.3/appkeys/{appKey}/messages", (string appKey, HttpRequest request) => SendAsync("friendtalk", appKey, request));
        await app.StartAsync(cancellationToken).ConfigureAwait(false);
        _app = app;
        _baseUri = new Uri(app.Urls.Single().TrimEnd('/') + "/");
    }

    /// <summary>How the fake answers for this number (domestic form, e.g. 01012345678) from now on.</summary>
    public void SetRecipient(string recipientNo, KakaoRecipientBehavior behavior) => _recipients[recipientNo] = behavior;

    /// <summary>How the fake answers for numbers not given their own behaviour (the demo: nobody is on KakaoTalk).</summary>
    public KakaoRecipientBehavior DefaultRecipientBehavior { get; set; }

    public Task<IReadOnlyList<KakaoRequest>> WaitForRequestsAsync(int count, TimeSpan timeout) =>
        _requests.WaitForCountAsync(count, timeout, got => string.Join("; ", got.Select(r => $"{r.Kind} {r.HeaderCode}")), CancellationToken.None);

    /// <summary>
    /// Posts a result webhook for an accepted recipient: {"messages":[{requestId, recipientSeq, messageStatus, resultCode,
    /// resultMessage}]}, signed with the secret key (X-Kakao-Timestamp, X-Kakao-Signature).
    /// </summary>
    /// <param name="timestamp">When the callback claims to be sent (a replay test passes an old one); now by default.</param>
    /// <param name="secretKey">Signs with another key (a forgery) when given.</param>
    /// <returns>The HTTP status the service answered.</returns>
    public async Task<int> SendResultCallbackAsync(string url, string providerMessageId, bool delivered = true,
        DateTimeOffset? timestamp = null, string? secretKey = null)
    {
        var (requestId, seq) = (providerMessageId.Split(':')[0], int.Parse(providerMessageId.Split(':')[1], System.Globalization.CultureInfo.InvariantCulture));
        var body = JsonSerializer.Serialize(new
        {
            messages = new[]
            {
                new
                {
                    requestId, recipientSeq = seq, messageStatus = delivered ? "COMPLETED" : "FAILED",
                    resultCode = delivered ? "1000" : "3018", resultMessage = delivered ? "성공" : "메시지를 전송할 수 없음",
                },
            },
        });
        var at = (timestamp ?? DateTimeOffset.UtcNow).ToUnixTimeSeconds();
        using var request = new HttpRequestMessage(HttpMethod.Post, url) { Content = new StringContent(body, System.Text.Encoding.UTF8, "application/json") };
        request.Headers.Add(KakaoCallbackSignature.TimestampHeader, at.ToString(System.Globalization.CultureInfo.InvariantCulture));
        request.Headers.Add(KakaoCallbackSignature.SignatureHeader, KakaoCallbackSignature.Compute(secretKey ?? SecretKey, at, body));
        using var response = await _callbackClient.SendAsync(request).ConfigureAwait(false);
        return (int)response.StatusCode;
    }

    private async Task<IResult> SendAsync(string kind, string appKey, HttpRequest request)
    {
        JsonObject? body;
        try
        {
            body = await JsonSerializer.DeserializeAsync<JsonObject>(request.Body).ConfigureAwait(false);
        }
        catch (JsonException)
        {
            body = null;
        }
        var idempotencyKey = request.Headers["X-NC-API-IDEMPOTENCY-KEY"].ToString();
        var recipients = body?["recipientList"]?.AsArray() ?? [];
        var requestId = $"{DateTime.UtcNow:yyyyMMddHHmmss}{Interlocked.Increment(ref _requestIds):D6}";

        (int Code, string Message) header = (0, "SUCCESS");
        if (appKey != AppKey) header = (-1000, "Invalid appkey");
        else if (request.Headers["X-Secret-Key"].ToString() != SecretKey) header = (-1001, "Invalid secret key");
        else if (body?["senderKey"]?.GetValue<string>() != SenderKey) header = (-2017, "Not exist plus friend.");
        else if (recipients.Count is 0 or > 1000) header = (-2001, "The 'recipientList' must have between 1 and 1000 recipients.");
        else if (kind == "alimtalk" && string.IsNullOrEmpty(body?["templateCode"]?.GetValue<string>())) header = (-2001, "The 'templateCode' must not be blank.");
        else if (idempotencyKey.Length > 0 && !_idempotencyKeys.TryAdd(idempotencyKey, true))
            header = (-1005, "The same 'X-NC-API-IDEMPOTENCY-KEY' was used within the last 10 minute.");

        var results = new List<KakaoRecipient>();
        if (header.Code == 0)
        {
            var seq = 0;
            foreach (var r in recipients)
            {
                var no = r?["recipientNo"]?.GetValue<string>() ?? "";
                var (code, message) = _recipients.GetValueOrDefault(no, DefaultRecipientBehavior) switch
                {
                    KakaoRecipientBehavior.NotAKakaoTalkUser => (NotAUserCode, "카카오톡 사용자가 아님 (not a KakaoTalk user)"),
                    KakaoRecipientBehavior.Blocked => (BlockedCode, "메시지를 전송할 수 없음 (the recipient blocked the channel)"),
                    _ => (0, "SUCCESS"),
                };
                var parameters = r?["templateParameter"]?.AsObject().ToDictionary(p => p.Key, p => p.Value?.GetValue<string>() ?? "") ?? [];
                results.Add(new KakaoRecipient(++seq, no, parameters, r?["content"]?.GetValue<string>(), r?["isAd"]?.GetValue<bool>(), code, message));
            }
        }
        _requests.Add(new KakaoRequest(kind, appKey, idempotencyKey, body?["templateCode"]?.GetValue<string>(), header.Code, requestId, results));

        return Results.Json(new
        {
            header = new { resultCode = header.Code, resultMessage = header.Message, isSuccessful = header.Code == 0 },
            message = header.Code != 0 ? null : new
            {
                requestId,
                senderGroupingKey = (string?)null,
                sendResults = results.Select(r => new { recipientSeq = r.RecipientSeq, recipientNo = r.RecipientNo, resultCode = r.ResultCode, resultMessage = r.ResultMessage, recipientGroupingKey = (string?)null }),
            },
        });
    }

    public async ValueTask DisposeAsync()
    {
        if (_app is not null)
        {
            await _app.StopAsync().ConfigureAwait(false);
            await _app.DisposeAsync().ConfigureAwait(false);
        }
        _callbackClient.Dispose();
    }
}

public enum KakaoRecipientBehavior
{
    Normal,

    /// <summary>Per-recipient resultCode 3019: the number has no KakaoTalk account.</summary>
    NotAKakaoTalkUser,

    /// <summary>Per-recipient resultCode 3018: the recipient blocked the sender's KakaoTalk channel.</summary>
    Blocked,
}

/// <param name="Kind">alimtalk or friendtalk.</param>
/// <param name="HeaderCode">The header resultCode answered (0 when the request was taken).</param>
/// <param name="RequestId">The requestId answered; provider ids are "{RequestId}:{RecipientSeq}".</param>
public sealed record KakaoRequest(string Kind, string AppKey, string IdempotencyKey, string? TemplateCode, int HeaderCode, string RequestId,
    IReadOnlyList<KakaoRecipient> Recipients);

public sealed record KakaoRecipient(int RecipientSeq, string RecipientNo, IReadOnlyDictionary<string, string> TemplateParameter, string? Content,
    bool? IsAd, int ResultCode, string ResultMessage);
