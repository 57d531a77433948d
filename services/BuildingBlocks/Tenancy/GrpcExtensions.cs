using Crm.BuildingBlocks.Errors;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Crm.BuildingBlocks.Tenancy;

public static class GrpcExtensions
{
    /// <summary>gRPC with the platform's interceptors: errors mapped outermost, then identity verified.</summary>
    public static IServiceCollection AddCrmGrpc(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddIdentityTokenVerification(configuration);
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

public static class TenancyServices
{
    /// <summary>A service: verifies identity tokens with Tenancy:PublicKeys, checked at start-up (and refuses a private key).</summary>
    public static IServiceCollection AddIdentityTokenVerification(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddTenancyOptions<TokenVerifierOptionsValidation>(configuration);
        services.AddSingleton(sp => new IdentityTokenVerifier(sp.GetRequiredService<IOptions<TenancyOptions>>().Value));
        return services;
    }

    /// <summary>An issuer (the gateway): signs identity tokens with Tenancy:SigningKey and Tenancy:SigningKeyId, checked at start-up.</summary>
    public static IServiceCollection AddIdentityTokenIssuer(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddTenancyOptions<TokenIssuerOptionsValidation>(configuration);
        services.AddSingleton(sp => new IdentityTokenIssuer(sp.GetRequiredService<IOptions<TenancyOptions>>().Value));
        return services;
    }

    private static void AddTenancyOptions<TValidation>(this IServiceCollection services, IConfiguration configuration)
        where TValidation : class, IValidateOptions<TenancyOptions>
    {
        services.AddOptions<TenancyOptions>().Bind(configuration.GetSection(TenancyOptions.Section)).ValidateOnStart();
        services.AddSingleton<IValidateOptions<TenancyOptions>, TValidation>();
    }
}
