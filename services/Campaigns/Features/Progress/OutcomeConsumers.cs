using MassTransit;

namespace Crm.Campaigns.Features.Progress;

// Progress from Delivery's outcome events (MessagesSent, MessagesSuppressed, MessagesFailed), matched to
// recipients by (campaign, contact); a run finishes when every recipient has an outcome. Owner: campaigns-core.

public static class ProgressConsumers
{
    public static void AddProgressConsumers(this IBusRegistrationConfigurator bus)
    {
    }
}
