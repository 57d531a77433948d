namespace Crm.Campaigns;

/// <summary>The "Campaigns" section.</summary>
public sealed class CampaignsOptions
{
    public const string Section = "Campaigns";

    /// <summary>Recipients claimed, rendered and written to the outbox in one transaction.</summary>
    public int FanoutPageSize { get; set; } = 1000;

    /// <summary>Messages per DeliverMessage command (Delivery takes commands in batches).</summary>
    public int MessagesPerCommand { get; set; } = 100;

    /// <summary>How often the run worker looks for runs to snapshot, fan out or finish.</summary>
    public TimeSpan RunPollInterval { get; set; } = TimeSpan.FromMilliseconds(500);

    /// <summary>How long a worker holds a run; another replica takes it over after a crash once it lapses.</summary>
    public TimeSpan RunLease { get; set; } = TimeSpan.FromSeconds(30);
}
