using Crm.BuildingBlocks.Errors;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;

namespace Crm.BuildingBlocks.Tenancy;

public static class GrpcExtensions
{
    /// <summary>gRPC with the platform's interceptors: errors mapped outermost, then identity verified.</summary>
    public static IServiceCollection AddCrmGrpc(this IServiceCollection services, IConfiguration configuration)
    {
        var options = configuration.GetSection(TenancyOptions.Section).Get<TenancyOptions>() ?? new TenancyOptions();
        services.AddSingleton(options);
        services.AddSingleton(new IdentityTokens(options));
        services.AddGrpc(o =>
        {
            o.Interceptors.Add<ErrorMappingInterceptor>();
            o.Interceptors.Add<TenancyInterceptor>();
            o.MaxReceiveMessageSize = 16 * 1024 * 1024;
            o.EnableDetailedErrors = false;
        })
        // REST/JSON for marketers and tools, from the protos' google.api.http routes (served on the
        // HTTP/1.1 endpoint; the gateway routes /v1/... here). Same interceptors, same identity token.
        .AddJsonTranscoding(o =>
            // Errors carry google.rpc details (field violations); JSON needs their types to write them.
            o.TypeRegistry = Google.Protobuf.Reflection.TypeRegistry.FromMessages(Google.Rpc.BadRequest.Descriptor, Google.Rpc.ErrorInfo.Descriptor));
        // Lets grpcurl and Postman discover the API (still behind the identity token).
        services.AddGrpcReflection();
        return services;
    }
}
