namespace Crm.BuildingBlocks.Tenancy;

/// <summary>Who is calling: the tenant (workspace) and what they may do. Never taken from a request body.</summary>
public sealed record CallerIdentity(string TenantId, IReadOnlySet<string> Scopes, string Subject)
{
    public bool Has(string scope) => Scopes.Contains(scope) || Scopes.Contains(Scope.All);
}

public static class Scope
{
    public const string All = "*";
    public const string ContactsRead = "contacts.read";
    public const string ContactsWrite = "contacts.write";
    public const string WorkspaceAdmin = "workspace.admin";
    public const string DeliveryRead = "delivery.read";
    public const string DeliverySend = "delivery.send";
    public const string DeliveryAdmin = "delivery.admin";
    public const string SegmentsRead = "segments.read";
    public const string SegmentsWrite = "segments.write";
    public const string CampaignsRead = "campaigns.read";
    public const string CampaignsWrite = "campaigns.write";
    /// <summary>Start, schedule, pause, resume and cancel a campaign: sending to customers is its own right.</summary>
    public const string CampaignsSend = "campaigns.send";
    /// <summary>The gateway's own: resolve any workspace's API key. Not included in "*".</summary>
    public const string ApiKeysVerify = "apikeys.verify";
}

public static class TenantIds
{
    /// <summary>Tenant ids are slugs: lower-case letters, digits and '-', 1 to 63 characters.</summary>
    public static bool IsValid(string? id) =>
        !string.IsNullOrEmpty(id) && id.Length <= 63 && id.All(c => c is (>= 'a' and <= 'z') or (>= '0' and <= '9') or '-');
}
