using Google.Protobuf.WellKnownTypes;
using Google.Rpc;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Crm.BuildingBlocks.Errors;

/// <summary>Maps domain exceptions to gRPC status codes with google.rpc details, in one place for every service.</summary>
public sealed class ErrorMappingInterceptor(ILogger<ErrorMappingInterceptor> logger) : Interceptor
{
    public override async Task<TResponse> UnaryServerHandler<TRequest, TResponse>(
        TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        try { return await continuation(request, context); }
        catch (Exception ex) when (Map(ex, context) is { } rpc) { throw rpc; }
    }

    public override async Task<TResponse> ClientStreamingServerHandler<TRequest, TResponse>(
        IAsyncStreamReader<TRequest> requestStream, ServerCallContext context, ClientStreamingServerMethod<TRequest, TResponse> continuation)
    {
        try { return await continuation(requestStream, context); }
        catch (Exception ex) when (Map(ex, context) is { } rpc) { throw rpc; }
    }

    public override async Task ServerStreamingServerHandler<TRequest, TResponse>(
        TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation)
    {
        try { await continuation(request, responseStream, context); }
        catch (Exception ex) when (Map(ex, context) is { } rpc) { throw rpc; }
    }

    private RpcException? Map(Exception ex, ServerCallContext context)
    {
        switch (ex)
        {
            case RpcException:
                return null;
            case InvalidArgumentException invalid:
                var badRequest = new BadRequest();
                badRequest.FieldViolations.AddRange(invalid.Violations.Select(v =>
                    new BadRequest.Types.FieldViolation { Field = v.Field, Description = v.Description }));
                return new Google.Rpc.Status
                {
                    Code = (int)Code.InvalidArgument,
                    Message = invalid.Message,
                    Details = { Any.Pack(badRequest) },
                }.ToRpcException();
            case NotFoundException:
                return Simple(Code.NotFound, ex.Message);
            case AlreadyExistsException:
                return Simple(Code.AlreadyExists, ex.Message);
            case FailedPreconditionException:
                return Simple(Code.FailedPrecondition, ex.Message);
            case OperationCanceledException when context.CancellationToken.IsCancellationRequested:
                return Simple(Code.Cancelled, "The call was cancelled.");
            case PostgresException { SqlState: PostgresErrorCodes.SerializationFailure or PostgresErrorCodes.DeadlockDetected or PostgresErrorCodes.UniqueViolation }:
                return Simple(Code.Aborted, "Concurrent change; retry the call.");
            case NpgsqlException or TimeoutException:
                logger.LogError(ex, "Storage unavailable in {Method}", context.Method);
                return Simple(Code.Unavailable, "Storage is unavailable; retry later.");
            default:
                logger.LogError(ex, "Unhandled error in {Method}", context.Method);
                return Simple(Code.Internal, "Internal error.");
        }
    }

    private static RpcException Simple(Code code, string message) =>
        new Google.Rpc.Status { Code = (int)code, Message = message }.ToRpcException();
}
