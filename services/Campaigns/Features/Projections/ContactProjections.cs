using MassTransit;

namespace Crm.Campaigns.Features.Projections;

// The template model's lean projection: Contacts' ContactUpserted, ContactErased and TransactionsRecorded,
// Segmentation's TierChanged. Owner: campaigns-core.

public static class ProjectionConsumers
{
    public static void AddProjectionConsumers(this IBusRegistrationConfigurator bus)
    {
    }
}
