using Crm.BuildingBlocks.Tenancy;

namespace Crm.Cli;

/// <summary>Local tokens, signed with the key the services run with (CRM_SIGNING_KEY, as make run sets it).</summary>
public static class Tokens
{
    public static string SigningKey =>
        Environment.GetEnvironmentVariable("CRM_SIGNING_KEY") is { Length: >= 32 } key
            ? key
            : throw new InvalidOperationException("Set CRM_SIGNING_KEY to the services' Tenancy:SigningKey (make run prints it).");

    public static string Issue(string tenant, IEnumerable<string> scopes, double hours = 12) =>
        new IdentityTokens(new TenancyOptions { SigningKey = SigningKey }).Issue(tenant, scopes, TimeSpan.FromHours(hours), "crm-cli");
}
