using Crm.Segmentation.V1;

namespace Crm.Segmentation.Tests.Infrastructure;

/// <summary>Waiting for, and reading, a tenant's stored RFM scores.</summary>
public static class RfmSteps
{
    /// <summary>
    /// Settled: no contact waits for the membership refresh (which notices changed orders), and the last
    /// recompute started after the last change it noticed, so every projected order is in the stored scores.
    /// </summary>
    public static Task WaitScoresSettledAsync(this SegmentationFixture fx, string tenant, int seconds = 60) =>
        fx.WaitUntilAsync("""
            SELECT count(*) FROM rfm_state s
            WHERE s.tenant_id = @tenant AND s.as_of IS NOT NULL AND s.computed_changes = s.orders_changes
              AND NOT EXISTS (SELECT 1 FROM dirty_contacts d WHERE d.tenant_id = @tenant)
            """, new { tenant }, 1, seconds);

    /// <summary>Every stored score of the tenant, page by page.</summary>
    public static async Task<List<RfmScore>> AllScoresAsync(this SegmentationFixture fx, string tenant, int pageSize = 100, string segment = "")
    {
        var all = new List<RfmScore>();
        var token = "";
        do
        {
            var page = await fx.Client.ListRfmScoresAsync(new ListRfmScoresRequest { PageSize = pageSize, PageToken = token, Segment = segment },
                fx.As(tenant, "segments.read"));
            Assert.True(page.Scores.Count <= pageSize);
            all.AddRange(page.Scores);
            token = page.NextPageToken;
        }
        while (token.Length > 0);
        Assert.Equal(all.Count, all.Select(s => s.ContactId).Distinct().Count());
        return all;
    }
}
