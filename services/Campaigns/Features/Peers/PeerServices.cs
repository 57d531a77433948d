using Crm.BuildingBlocks.Tenancy;
using Grpc.Net.Client;

namespace Crm.Campaigns.Features.Peers;

/// <summary>
/// Segmentation and Delivery as Campaigns calls them: as itself (workload identity, see
/// <see cref="WorkloadIdentity"/>), for the tenant of the run, with only the scopes each call needs.
/// Segmentation lists Campaigns' public key with [segments.read]; Delivery with [delivery.send, delivery.read].
/// </summary>
public sealed class PeerServices(IConfiguration configuration, WorkloadIdentity identity) : IDisposable
{
    private readonly GrpcChannel? _segmentation = Channel(configuration, "Segmentation");
    private readonly GrpcChannel? _delivery = Channel(configuration, "Delivery");

    public WorkloadIdentity Identity { get; } = identity;

    public Crm.Segmentation.V1.SegmentationService.SegmentationServiceClient Segmentation => new(_segmentation
        ?? throw new InvalidOperationException("ConnectionStrings:Segmentation is not configured: this Campaigns cannot read audiences."));

    public Crm.Delivery.V1.DeliveryService.DeliveryServiceClient? Delivery => _delivery is null ? null : new(_delivery);

    private static GrpcChannel? Channel(IConfiguration configuration, string name) =>
        configuration.GetConnectionString(name) is { Length: > 0 } address
            ? GrpcChannel.ForAddress(address, new GrpcChannelOptions { MaxReceiveMessageSize = 64 * 1024 * 1024 })
            : null;

    public void Dispose()
    {
        _segmentation?.Dispose();
        _delivery?.Dispose();
    }
}

public static class PeersRegistration
{
    public static IServiceCollection AddPeers(this IServiceCollection services)
    {
        services.AddWorkloadIdentity(CampaignsModule.ServiceName);
        services.AddSingleton<PeerServices>();
        return services;
    }
}
