using System.Net;
using Crm.BuildingBlocks.Tenancy;
using Crm.Contacts.Tests.Infrastructure;

namespace Crm.Contacts.Tests;

/// <summary>The Prometheus scrape every service serves on its HTTP endpoint (ServiceDefaults), without a token.</summary>
[Collection(ContactsCollection.Name)]
public sealed class MetricsTests(ContactsFixture fx)
{
    [Fact]
    public async Task Should_serve_the_request_duration_of_a_call_on_metrics_without_a_token()
    {
        using var http = fx.Host.Rest(fx.Host.Tokens.Issue(ContactsFixture.NewTenant(), [Scope.All]));
        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync("/v1/contacts/external/metrics-probe")).StatusCode);

        // The duration is recorded as the request ends, a moment after the client has its answer, and
        // the exporter caches a scrape briefly: scrape until the call shows (or give up after 10 s).
        using var prometheus = fx.Host.Rest(null);
        var deadline = DateTime.UtcNow.AddSeconds(10);
        string? line;
        string text;
        do
        {
            var scrape = await prometheus.GetAsync("/metrics");
            Assert.Equal(HttpStatusCode.OK, scrape.StatusCode);
            Assert.StartsWith("text/plain", scrape.Content.Headers.ContentType?.MediaType, StringComparison.Ordinal);
            text = await scrape.Content.ReadAsStringAsync();
            line = text.Split('\n').FirstOrDefault(l => l.StartsWith("http_server_request_duration_seconds_count{", StringComparison.Ordinal)
                && l.Contains("http_response_status_code=\"404\"", StringComparison.Ordinal)
                && l.Contains("http_route=\"/v1/contacts/external/{contact.external_id}\"", StringComparison.Ordinal));
            if (line is null) await Task.Delay(200);
        } while (line is null && DateTime.UtcNow < deadline);
        Assert.True(line is not null, "no request duration for the call among:\n"
            + string.Join('\n', text.Split('\n').Where(l => l.StartsWith("http_server_request_duration_seconds_count", StringComparison.Ordinal))));
    }
}
