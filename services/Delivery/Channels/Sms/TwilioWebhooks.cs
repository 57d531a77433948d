using Crm.Delivery.Channels.Sms;
using Crm.Delivery.Features.Policies;

namespace Crm.Delivery.Channels.Sms;

/// <summary>
/// What Twilio's webhooks share: /providers/twilio/{tenant}/{account}/{kind}, a form signed with
/// X-Twilio-Signature (HMAC-SHA1 of the URL and the form, keyed with the account's auth token).
/// </summary>
internal static class TwilioWebhooks
{
    public static string UrlFor(string publicBaseUrl, string tenant, string accountId, string kind) =>
        $"{publicBaseUrl.TrimEnd('/')}/providers/twilio/{Uri.EscapeDataString(tenant)}/{Uri.EscapeDataString(accountId)}/{kind}";

    /// <returns>The form, when Twilio signed it for this account; otherwise the answer refusing it.</returns>
    public static async Task<(IFormCollection? Form, IResult? Refusal)> ReadSignedAsync(string tenant, string account, string kind,
        HttpRequest request, TenantPolicies policies, DeliveryOptions options, CancellationToken ct)
    {
        // A path naming no possible tenant is refused before anything is read or looked up.
        if (!Crm.BuildingBlocks.Tenancy.TenantIds.IsValid(tenant)) return (null, Results.NotFound());
        // A tenant without this account (unknown, or not one of ours) is refused before the body is read, and
        // remembered: repeats cost no database round trip.
        var row = await policies.WebhookAccountAsync(tenant, account, TwilioSmsSender.Kind, ct);
        if (row is null) return (null, Results.NotFound());
        if (!request.HasFormContentType) return (null, Results.BadRequest());
        var form = await request.ReadFormAsync(ct);
        var token = policies.Config(tenant, row).Secret;
        // Twilio signs the URL it was given: the public one when configured, else the one it called.
        var url = options.PublicBaseUrl.Length > 0
            ? UrlFor(options.PublicBaseUrl, tenant, account, kind)
            : $"{request.Scheme}://{request.Host}{request.PathBase}{request.Path}";
        var parameters = form.SelectMany(f => f.Value.Select(v => new KeyValuePair<string, string>(f.Key, v ?? "")));
        if (token is null || !TwilioSignature.Validate(url, parameters, token, request.Headers[TwilioSignature.HeaderName]))
            return (null, Results.StatusCode(StatusCodes.Status403Forbidden));
        return (form, null);
    }
}
