using Crm.BuildingBlocks.Data;
using Crm.Delivery.Features.Messages;
using Crm.Delivery.Features.Policies;
using Crm.Delivery.Security;
using Crm.Delivery.V1;
using Npgsql;

namespace Crm.Delivery.Features;

/// <summary>crm.delivery.v1.DeliveryService: one partial file per capability folder (Messages/, Policies/).</summary>
public sealed partial class DeliveryGrpcService : DeliveryService.DeliveryServiceBase
{
    private readonly TenantDb _db;
    private readonly TenantPolicies _policies;
    private readonly SecretBox _secrets;
    private readonly MessageIntake _intake;
    private readonly Pipeline.DeliveryPipeline _pipeline;
    private readonly DeliveryOptions _options;
    private readonly TimeProvider _clock;
    private readonly Crm.BuildingBlocks.Net.OutboundGuard _guard;
    private readonly Channels.ChannelRegistry _channels;

    public DeliveryGrpcService(TenantDb db, TenantPolicies policies, SecretBox secrets, MessageIntake intake,
        Pipeline.DeliveryPipeline pipeline, DeliveryOptions options, TimeProvider clock, Crm.BuildingBlocks.Net.OutboundGuard guard,
        Channels.ChannelRegistry channels)
    {
        _channels = channels;
        _guard = guard;
        _options = options;
        _clock = clock;
        _db = db;
        _policies = policies;
        _secrets = secrets;
        _intake = intake;
        _pipeline = pipeline;
    }
}
