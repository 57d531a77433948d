namespace Crm.Gateway.Auth;

/// <summary>
/// Runs on every request: an API key is exchanged for an identity token (or refused with
/// 401 / UNAUTHENTICATED) and counted against its rate (429 / RESOURCE_EXHAUSTED). Anything else in
/// Authorization goes on unchanged for the service to verify.
/// </summary>
public sealed class ApiKeyMiddleware(RequestDelegate next, ApiKeyExchange exchange, KeyRateLimits limits, ApiKeyUsage usage, ILogger<ApiKeyMiddleware> logger)
{
    public async Task InvokeAsync(HttpContext context)
    {
        var header = context.Request.Headers.Authorization.ToString();
        const string bearer = "Bearer ";
        if (header.StartsWith(bearer, StringComparison.OrdinalIgnoreCase) && ApiKeyExchange.IsApiKey(header[bearer.Length..].Trim()))
        {
            ApiKeyExchange.Resolved? resolved;
            try
            {
                resolved = await exchange.ResolveAsync(header[bearer.Length..].Trim(), context.RequestAborted);
            }
            catch (Grpc.Core.RpcException e)
            {
                // Contacts could not answer: the caller may retry; nothing is remembered about the key.
                logger.LogWarning(e, "Could not resolve an API key with Contacts ({Status})", e.StatusCode);
                await UnavailableAsync(context);
                return;
            }
            if (resolved is null)
            {
                await GatewayErrors.WriteAsync(context, Grpc.Core.StatusCode.Unauthenticated, "The API key is unknown, revoked or expired.");
                return;
            }
            usage.Record(resolved.KeyId);
            TimeSpan wait;
            try
            {
                wait = await limits.TryTakeAsync(resolved.KeyId);
            }
            catch (Exception e) when (e is StackExchange.Redis.RedisException or TimeoutException)
            {
                // The key's rate cannot be checked: refused rather than let through unmetered.
                logger.LogWarning(e, "Could not check an API key's rate in Redis");
                await UnavailableAsync(context);
                return;
            }
            if (wait > TimeSpan.Zero)
            {
                var seconds = (int)Math.Ceiling(wait.TotalSeconds);
                context.Response.Headers.RetryAfter = seconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
                await GatewayErrors.WriteAsync(context, Grpc.Core.StatusCode.ResourceExhausted, $"Too many requests for this API key; retry in {seconds} s.");
                return;
            }
            context.Request.Headers.Authorization = bearer + resolved.Token;
        }
        await next(context);
    }

    private static Task UnavailableAsync(HttpContext context)
    {
        context.Response.Headers.RetryAfter = "1";
        return GatewayErrors.WriteAsync(context, Grpc.Core.StatusCode.Unavailable, "The API key cannot be checked right now; retry shortly.");
    }
}
