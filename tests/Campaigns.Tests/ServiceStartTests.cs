using Crm.Campaigns.Tests.Infrastructure;
using Crm.Campaigns.V1;
using Grpc.Core;

namespace Crm.Campaigns.Tests;

[Collection(CampaignsCollection.Name)]
public sealed class ServiceStartTests(CampaignsFixture fixture)
{
    [Fact]
    public async Task Should_be_ready_with_every_table_under_row_level_security()
    {
        using var http = new HttpClient { BaseAddress = fixture.Host.HttpAddress };
        Assert.True((await http.GetAsync("/health/ready")).IsSuccessStatusCode);
        var unprotected = await fixture.QueryScalarAsync<long>("""
            SELECT count(*) FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id'
            WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace AND NOT (c.relrowsecurity AND c.relforcerowsecurity)
            """);
        Assert.Equal(0, unprotected);
        Assert.True(await fixture.QueryScalarAsync<long>("SELECT count(*) FROM pg_tables WHERE tablename = 'recipients'") == 1);
    }

    [Fact]
    public async Task Should_refuse_a_call_without_an_identity_token()
    {
        var e = await Assert.ThrowsAsync<RpcException>(() => fixture.Client.ListCampaignsAsync(new ListCampaignsRequest()).ResponseAsync);
        Assert.Equal(StatusCode.Unauthenticated, e.StatusCode);
    }
}
