using Google.Protobuf;
using Google.Protobuf.Reflection;
using Grpc.Core;

namespace Crm.Gateway;

/// <summary>
/// Errors the gateway answers itself, in the form each caller expects from the services: a gRPC
/// caller a trailers-only gRPC status, a REST caller the HTTP status JSON transcoding would give
/// with the google.rpc.Status as JSON.
/// </summary>
internal static class GatewayErrors
{
    private static readonly JsonFormatter Json = new(JsonFormatter.Settings.Default
        .WithTypeRegistry(TypeRegistry.FromMessages(Google.Rpc.BadRequest.Descriptor)));

    public static Task WriteAsync(HttpContext http, StatusCode code, string message) =>
        WriteAsync(http, new Google.Rpc.Status { Code = (int)code, Message = message });

    public static async Task WriteAsync(HttpContext http, Google.Rpc.Status status)
    {
        if (http.Request.ContentType?.StartsWith("application/grpc", StringComparison.Ordinal) == true)
        {
            http.Response.StatusCode = StatusCodes.Status200OK;
            http.Response.ContentType = "application/grpc";
            http.Response.Headers["grpc-status"] = status.Code.ToString(System.Globalization.CultureInfo.InvariantCulture);
            http.Response.Headers["grpc-message"] = Uri.EscapeDataString(status.Message);
            return;
        }
        http.Response.StatusCode = (StatusCode)status.Code switch
        {
            StatusCode.InvalidArgument or StatusCode.FailedPrecondition or StatusCode.OutOfRange => StatusCodes.Status400BadRequest,
            StatusCode.Unauthenticated => StatusCodes.Status401Unauthorized,
            StatusCode.PermissionDenied => StatusCodes.Status403Forbidden,
            StatusCode.NotFound => StatusCodes.Status404NotFound,
            StatusCode.AlreadyExists or StatusCode.Aborted => StatusCodes.Status409Conflict,
            StatusCode.ResourceExhausted => StatusCodes.Status429TooManyRequests,
            StatusCode.Unavailable => StatusCodes.Status503ServiceUnavailable,
            StatusCode.Cancelled => 499,
            _ => StatusCodes.Status500InternalServerError,
        };
        http.Response.ContentType = "application/json";
        await http.Response.WriteAsync(Json.Format(status));
    }
}
