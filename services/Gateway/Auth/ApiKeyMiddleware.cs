namespace Crm.Gateway.Auth;

/// <summary>
/// Runs on every request: an API key is exchanged for an identity token (or refused with
/// 401 / UNAUTHENTICATED) and counted against its rate (429 / RESOURCE_EXHAUSTED). Anything else in
/// Authorization goes on unchanged for the service to verify.
/// </summary>
public sealed class ApiKeyMiddleware(RequestDelegate next, ApiKeyExchange exchange, KeyRateLimits limits, ILogger<ApiKeyMiddleware> logger)
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
                await RefuseAsync(context, StatusCodes.Status401Unauthorized, 16, "The API key is unknown or revoked.");
                return;
            }
            TimeSpan wait;
            try
            {
                wait = await limits.TryTakeAsync(resolved.KeyId);
            }
            catch (StackExchange.Redis.RedisException e)
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
                await RefuseAsync(context, StatusCodes.Status429TooManyRequests, 8, $"Too many requests for this API key; retry in {seconds} s.");
                return;
            }
            context.Request.Headers.Authorization = bearer + resolved.Token;
        }
        await next(context);
    }

    private static Task UnavailableAsync(HttpContext context)
    {
        context.Response.Headers.RetryAfter = "1";
        return RefuseAsync(context, StatusCodes.Status503ServiceUnavailable, 14, "The API key cannot be checked right now; retry shortly.");
    }

    /// <summary>gRPC callers get a trailers-only gRPC status; REST callers an HTTP status with a google.rpc.Status-like body.</summary>
    private static async Task RefuseAsync(HttpContext context, int httpStatus, int grpcStatus, string message)
    {
        if (context.Request.ContentType?.StartsWith("application/grpc", StringComparison.Ordinal) == true)
        {
            context.Response.StatusCode = StatusCodes.Status200OK;
            context.Response.ContentType = "application/grpc";
            context.Response.Headers["grpc-status"] = grpcStatus.ToString(System.Globalization.CultureInfo.InvariantCulture);
            context.Response.Headers["grpc-message"] = Uri.EscapeDataString(message);
            return;
        }
        context.Response.StatusCode = httpStatus;
        await context.Response.WriteAsJsonAsync(new { code = grpcStatus, message, details = Array.Empty<object>() });
    }
}
