using System.Collections.Frozen;
using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Crm.BuildingBlocks.Net;

namespace Crm.Delivery.Channels.Kakao;

/// <summary>
/// Sends KakaoTalk business messages through NHN Cloud's Bizmessage API (v2.3): AlimTalk
/// (<c>POST /alimtalk/v2.3/appkeys/{appkey}/messages</c>: senderKey, templateCode, recipientList of recipientNo +
/// templateParameter) and FriendTalk (<c>/friendtalk/...</c>: content, isAd), with X-Secret-Key and an
/// X-NC-API-IDEMPOTENCY-KEY per message. The answer's header says whether the request was taken, and
/// message.sendResults the result of each recipient (resultCode 0 accepted). One recipient per call here
/// (the pipeline sends message by message); the API takes up to 1,000.
/// </summary>
/// <remarks>
/// Like the Twilio sender: 429 and 5xx are retried inside the call with Retry-After honoured, a timeout or lost
/// connection once the body went out is Unconfirmed and never retried. Provider ids are "{requestId}:{recipientSeq}",
/// what the result webhook names.
/// </remarks>
public sealed class NhnKakaoSender(HttpClient http, RetryPolicy retry) : IKakaoSender
{
    public const string Kind = "nhn_kakao";
    public const string IdempotencyHeader = "X-NC-API-IDEMPOTENCY-KEY";

    /// <summary>
    /// Per-recipient codes meaning this contact cannot get our KakaoTalk message (KakaoTalk's delivery codes:
    /// 3018 cannot be sent, e.g. the recipient blocked the channel; 3019 not a KakaoTalk user).
    /// </summary>
    public static readonly FrozenSet<int> NotReachableCodes = FrozenSet.Create(3018, 3019);

    /// <summary>NHN Cloud's answer to a repeated X-NC-API-IDEMPOTENCY-KEY within ten minutes: an earlier attempt reached it.</summary>
    private const int DuplicateIdempotencyKey = -1005;

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    public async Task<KakaoSendOutcome> SendAsync(ProviderAccountConfig account, OutgoingKakao message, CancellationToken ct)
    {
        var (kakao, problem) = KakaoAccount.Read(account);
        if (kakao is null)
            return new KakaoSendOutcome(new SendOutcome(SendOutcomeKind.Permanent, $"KakaoTalk account {account.AccountId} is misconfigured: {problem}", Attempts: 0));
        var notReachable = false;
        var outcome = await retry.RunAsync(async token =>
        {
            var (attempt, unreachable) = await AttemptAsync(kakao, message, token);
            notReachable = unreachable;
            return attempt;
        }, ct);
        return new KakaoSendOutcome(outcome, notReachable);
    }

    private async Task<(ProviderAttempt Attempt, bool NotReachable)> AttemptAsync(KakaoAccount kakao, OutgoingKakao message, CancellationToken ct)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(retry.Options.RequestTimeout);
        var friendTalk = message.TemplateCode is null;
        object recipient = friendTalk
            ? new { recipientNo = message.RecipientNo, content = message.Content, isAd = message.Advertising }
            : new { recipientNo = message.RecipientNo, templateParameter = message.TemplateParameters };
        object body = friendTalk
            ? new { senderKey = kakao.SenderKey, recipientList = new[] { recipient } }
            : new { senderKey = kakao.SenderKey, templateCode = message.TemplateCode, recipientList = new[] { recipient } };
        var started = 0;
        using var content = new SendTrackingContent(JsonContent.Create(body, options: Json), () => Volatile.Write(ref started, 1));
        using var request = new HttpRequestMessage(HttpMethod.Post, kakao.MessagesUri(friendTalk)) { Content = content };
        request.Headers.Add("X-Secret-Key", kakao.SecretKey);
        request.Headers.Add(IdempotencyHeader, message.IdempotencyKey);
        try
        {
            using var response = await http.SendAsync(request, timeout.Token);
            var text = await response.Content.ReadAsStringAsync(timeout.Token);
            return Classify(response, NhnAnswer.Parse(text));
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            return (Volatile.Read(ref started) == 1
                ? ProviderAttempt.Final(new SendOutcome(SendOutcomeKind.Unconfirmed,
                    $"no answer from NHN Cloud within {retry.Options.RequestTimeout.TotalSeconds:0.###} s; the message may have been accepted"))
                : ProviderAttempt.Retry("timed out before the request was sent"), false);
        }
        catch (HttpRequestException e) when (e.GetBaseException() is OutboundAddressRefusedException refused)
        {
            return (ProviderAttempt.Final(new SendOutcome(SendOutcomeKind.Permanent, $"KakaoTalk base URL refused: {refused.Message}")), false);
        }
        catch (HttpRequestException e)
        {
            var cause = $"({e.HttpRequestError}): {e.GetBaseException().Message}";
            return (Volatile.Read(ref started) == 1
                ? ProviderAttempt.Final(new SendOutcome(SendOutcomeKind.Unconfirmed, $"connection lost after the request was sent {cause}"))
                : ProviderAttempt.Retry($"could not reach NHN Cloud {cause}"), false);
        }
    }

    private (ProviderAttempt, bool) Classify(HttpResponseMessage response, NhnAnswer answer)
    {
        var status = (int)response.StatusCode;
        if (response.StatusCode == HttpStatusCode.TooManyRequests || status >= 500)
        {
            var reason = string.Create(CultureInfo.InvariantCulture, $"NHN Cloud {status}");
            var retryAfter = retry.RetryAfter(response.Headers.RetryAfter);
            if (retryAfter is { } wait && !retry.CanWaitFor(wait))
                return (ProviderAttempt.Final(new SendOutcome(SendOutcomeKind.Transient, reason, RetryAfter: wait)), false);
            return (ProviderAttempt.Retry(reason, retryAfter), false);
        }
        if (answer.HeaderCode == DuplicateIdempotencyKey)
            return (ProviderAttempt.Final(new SendOutcome(SendOutcomeKind.Unconfirmed,
                "NHN Cloud had this idempotency key already: an earlier attempt reached it", ProviderErrorCode: DuplicateIdempotencyKey)), false);
        if (!response.IsSuccessStatusCode || answer.HeaderSuccessful != true)
            return (ProviderAttempt.Final(new SendOutcome(SendOutcomeKind.Permanent,
                string.Create(CultureInfo.InvariantCulture, $"NHN Cloud {status} error {answer.HeaderCode}: {answer.HeaderMessage}"),
                ProviderErrorCode: answer.HeaderCode)), false);
        if (answer.RecipientCode is { } code and not 0)
        {
            var reason = string.Create(CultureInfo.InvariantCulture, $"KakaoTalk result {code}: {answer.RecipientMessage}");
            return (ProviderAttempt.Final(new SendOutcome(SendOutcomeKind.Permanent, reason, ProviderErrorCode: code)), NotReachableCodes.Contains(code));
        }
        return (ProviderAttempt.Final(new SendOutcome(SendOutcomeKind.Sent, "KakaoTalk accepted",
            ProviderMessageId: answer.RequestId is null ? null : $"{answer.RequestId}:{answer.RecipientSeq ?? 1}")), false);
    }

    /// <summary>The fields of an NHN Cloud answer that matter here (header; the first of message.sendResults).</summary>
    private readonly record struct NhnAnswer(bool? HeaderSuccessful, int? HeaderCode, string? HeaderMessage, string? RequestId,
        int? RecipientSeq, int? RecipientCode, string? RecipientMessage)
    {
        public static NhnAnswer Parse(string text)
        {
            try
            {
                using var document = JsonDocument.Parse(text);
                var root = document.RootElement;
                if (root.ValueKind != JsonValueKind.Object) return default;
                var header = Child(root, "header");
                var message = Child(root, "message");
                var first = message is { } m && m.TryGetProperty("sendResults", out var results) && results.ValueKind == JsonValueKind.Array
                    && results.GetArrayLength() > 0 ? results[0] : (JsonElement?)null;
                return new NhnAnswer(
                    header is { } h && h.TryGetProperty("isSuccessful", out var ok) && ok.ValueKind is JsonValueKind.True or JsonValueKind.False ? ok.GetBoolean() : null,
                    Number(header, "resultCode"), Text(header, "resultMessage"), Text(message, "requestId"),
                    Number(first, "recipientSeq"), Number(first, "resultCode"), Text(first, "resultMessage"));
            }
            catch (JsonException)
            {
                return default;
            }
        }

        private static JsonElement? Child(JsonElement? e, string name) =>
            e is { ValueKind: JsonValueKind.Object } o && o.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Object ? v : null;

        private static string? Text(JsonElement? e, string name) =>
            e is { ValueKind: JsonValueKind.Object } o && o.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

        private static int? Number(JsonElement? e, string name) =>
            e is { ValueKind: JsonValueKind.Object } o && o.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out var n) ? n : null;
    }
}
