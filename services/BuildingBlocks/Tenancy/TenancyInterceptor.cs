using Grpc.Core;
using Grpc.Core.Interceptors;

namespace Crm.BuildingBlocks.Tenancy;

/// <summary>Verifies the caller's identity token on every gRPC call; handlers read it with <c>context.Caller()</c>.</summary>
public sealed class TenancyInterceptor(IdentityTokenVerifier tokens) : Interceptor
{
    private const string IdentityKey = "crm.identity";

    public override async Task<TResponse> UnaryServerHandler<TRequest, TResponse>(
        TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        await AuthenticateAsync(context);
        return await continuation(request, context);
    }

    public override async Task<TResponse> ClientStreamingServerHandler<TRequest, TResponse>(
        IAsyncStreamReader<TRequest> requestStream, ServerCallContext context, ClientStreamingServerMethod<TRequest, TResponse> continuation)
    {
        await AuthenticateAsync(context);
        return await continuation(requestStream, context);
    }

    public override async Task ServerStreamingServerHandler<TRequest, TResponse>(
        TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation)
    {
        await AuthenticateAsync(context);
        await continuation(request, responseStream, context);
    }

    private async Task AuthenticateAsync(ServerCallContext context)
    {
        var header = context.RequestHeaders.GetValue("authorization");
        const string bearer = "Bearer ";
        if (header is null || !header.StartsWith(bearer, StringComparison.OrdinalIgnoreCase))
            throw new RpcException(new Status(StatusCode.Unauthenticated, "Missing 'authorization: Bearer <token>' metadata."));
        var identity = await tokens.VerifyAsync(header[bearer.Length..].Trim())
            ?? throw new RpcException(new Status(StatusCode.Unauthenticated, "The identity token is invalid or expired."));
        context.UserState[IdentityKey] = identity;
    }

    internal static CallerIdentity Get(ServerCallContext context) =>
        context.UserState.TryGetValue(IdentityKey, out var v) && v is CallerIdentity id
            ? id
            : throw new RpcException(new Status(StatusCode.Unauthenticated, "No verified identity."));
}

public static class CallContextExtensions
{
    /// <summary>The verified caller; throws PERMISSION_DENIED when a required scope is missing.</summary>
    public static CallerIdentity Caller(this ServerCallContext context, string requiredScope)
    {
        var identity = TenancyInterceptor.Get(context);
        if (!identity.Has(requiredScope))
            throw new RpcException(new Status(StatusCode.PermissionDenied, $"The token lacks the '{requiredScope}' scope."));
        return identity;
    }
}
