namespace Crm.Delivery.Features.Webhooks;

/// <summary>Webhook secrets are sealed (SecretBox) bound to their tenant and endpoint: a sealed secret copied to another row does not open.</summary>
public static class WebhookSecrets
{
    public static string AssociatedData(string tenant, Guid endpointId) => $"{tenant}/webhook/{endpointId}";
}
