using Crm.BuildingBlocks.Tenancy;
using Grpc.Core;
using Grpc.Net.Client;

namespace Crm.Gateway;

/// <summary>The gateway's own gRPC channel to Contacts (API keys, streamed imports), one per process.</summary>
public sealed class ContactsChannel(GatewayOptions options, IdentityTokenIssuer tokens) : IDisposable
{
    public GrpcChannel Channel { get; } = GrpcChannel.ForAddress(options.ContactsGrpc);

    /// <summary>The gateway's own identity (apikeys.verify), for its calls about API keys across workspaces.</summary>
    public Metadata GatewayCredentials() =>
        new() { { "authorization", "Bearer " + tokens.Issue("gateway", [Scope.ApiKeysVerify], TimeSpan.FromMinutes(1), "gateway") } };

    public void Dispose() => Channel.Dispose();
}
