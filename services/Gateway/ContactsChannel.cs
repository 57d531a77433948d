using Grpc.Net.Client;

namespace Crm.Gateway;

/// <summary>The gateway's own gRPC channel to Contacts (API keys, streamed imports), one per process.</summary>
public sealed class ContactsChannel(GatewayOptions options) : IDisposable
{
    public GrpcChannel Channel { get; } = GrpcChannel.ForAddress(options.ContactsGrpc);

    public void Dispose() => Channel.Dispose();
}
