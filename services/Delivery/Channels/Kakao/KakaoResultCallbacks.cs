using System.Text.Json;
using Crm.BuildingBlocks.Data;
using Crm.Delivery.Features.Policies;

namespace Crm.Delivery.Channels.Kakao;

/// <summary>
/// The KakaoTalk result webhook: POST /providers/kakao/{tenant}/{account}/results with a JSON body
/// <c>{"messages":[{"requestId","recipientSeq","messageStatus":"COMPLETED"|"FAILED","resultCode","resultMessage"}]}</c>,
/// signed as <see cref="KakaoCallbackSignature"/> describes with the account's secret key. A forged signature,
/// or a timestamp outside five minutes (a replay), is refused with 403 and changes nothing; a repeated result
/// within the window finds the message already moved and changes nothing either.
/// </summary>
public static class KakaoResultCallbacks
{
    public const string Path = "/providers/kakao/{tenant}/{account}/results";

    /// <summary>Bodies are small (one entry per recipient); anything larger is not a result callback.</summary>
    private const int MaxBodyBytes = 1 << 20;

    public static string UrlFor(string publicBaseUrl, string tenant, string accountId) =>
        $"{publicBaseUrl.TrimEnd('/')}/providers/kakao/{Uri.EscapeDataString(tenant)}/{Uri.EscapeDataString(accountId)}/results";

    public static WebApplication MapKakaoResultCallbacks(this WebApplication app)
    {
        app.MapPost(Path, HandleAsync).DisableAntiforgery();
        return app;
    }

    private static async Task<IResult> HandleAsync(string tenant, string account, HttpRequest request, TenantPolicies policies,
        TenantDb db, TimeProvider clock, CancellationToken ct)
    {
        if (!Crm.BuildingBlocks.Tenancy.TenantIds.IsValid(tenant)) return Results.NotFound();
        var row = await policies.WebhookAccountAsync(tenant, account, NhnKakaoSender.Kind, ct);
        if (row is null) return Results.NotFound();
        if (request.ContentLength > MaxBodyBytes) return Results.StatusCode(StatusCodes.Status413PayloadTooLarge);
        using var reader = new StreamReader(request.Body);
        var body = await reader.ReadToEndAsync(ct);
        var secret = policies.Config(tenant, row).Secret;
        var now = clock.GetUtcNow();
        if (secret is null || !KakaoCallbackSignature.Validate(secret, request.Headers[KakaoCallbackSignature.TimestampHeader],
                body, request.Headers[KakaoCallbackSignature.SignatureHeader], now))
            return Results.StatusCode(StatusCodes.Status403Forbidden);

        List<Result>? results;
        try
        {
            results = JsonSerializer.Deserialize<Envelope>(body, new JsonSerializerOptions(JsonSerializerDefaults.Web))?.Messages;
        }
        catch (JsonException)
        {
            return Results.BadRequest();
        }
        foreach (var r in results ?? [])
        {
            var (next, reason) = r.MessageStatus switch
            {
                "COMPLETED" => ("delivered", ""),
                "FAILED" => ("failed", $"KakaoTalk result {r.ResultCode}: {r.ResultMessage}"),
                _ => ((string?)null, ""),
            };
            if (next is null || string.IsNullOrEmpty(r.RequestId)) continue;
            await ProviderReceipts.ApplyAsync(db, tenant, $"{r.RequestId}:{r.RecipientSeq}", next, reason, now, "kakao", ct);
        }
        return Results.NoContent();
    }

    private sealed record Envelope(List<Result>? Messages);

    private sealed record Result(string? RequestId, int RecipientSeq, string? MessageStatus, string? ResultCode, string? ResultMessage);
}
