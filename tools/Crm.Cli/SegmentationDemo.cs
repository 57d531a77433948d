using System.Globalization;
using Crm.Segmentation.V1;
using Grpc.Core;
using Grpc.Net.Client;

namespace Crm.Cli;

/// <summary>
/// make run's third act, through the gateway with the demo's API key (gRPC): the shop's RFM report — who
/// brings the money — and a behaviour segment with its size. Segmentation built its projection from the
/// events of the demo's import; make run waits for it before this runs.
/// </summary>
public static class SegmentationDemo
{
    private const string SegmentName = "Tea lovers slipping away";

    /// <param name="rebuild">The projection lacks orders Contacts has (a workspace filled before Segmentation ran): backfill it first.</param>
    public static async Task RunAsync(Uri gateway, string apiKey, bool rebuild)
    {
        using var channel = GrpcChannel.ForAddress(gateway);
        var segmentation = new SegmentationService.SegmentationServiceClient(channel);
        var auth = new Metadata { { "authorization", "Bearer " + apiKey } };
        if (rebuild) await RebuildAsync(segmentation, auth);
        await ShowRfmReportAsync(segmentation, auth);
        await ShowSegmentAsync(segmentation, auth);
    }

    private static async Task RebuildAsync(SegmentationService.SegmentationServiceClient segmentation, Metadata auth)
    {
        Rebuild rebuild;
        try
        {
            rebuild = await segmentation.RebuildProjectionsAsync(new RebuildProjectionsRequest(), auth);
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.Unimplemented)
        {
            Console.WriteLine("backfill from Contacts: not in this build (RebuildProjections answered UNIMPLEMENTED)");
            return;
        }
        var deadline = DateTime.UtcNow.AddMinutes(2);
        while (rebuild.Status == RebuildStatus.Running && DateTime.UtcNow < deadline)
        {
            await Task.Delay(500);
            rebuild = await segmentation.GetRebuildAsync(new GetRebuildRequest { RebuildId = rebuild.RebuildId }, auth);
        }
        Console.WriteLine($"backfill from Contacts: {rebuild.Status}, {rebuild.Contacts} contacts, {rebuild.Orders} orders {rebuild.Failure}");
    }

    private static async Task ShowRfmReportAsync(SegmentationService.SegmentationServiceClient segmentation, Metadata auth)
    {
        RfmReport report;
        try
        {
            report = await segmentation.GetRfmReportAsync(new GetRfmReportRequest { WindowDays = 365 }, auth);
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.Unimplemented)
        {
            Console.WriteLine("RFM report: not in this build (GetRfmReport answered UNIMPLEMENTED)");
            return;
        }
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"RFM report, the year to {report.AsOf.ToDateTime():yyyy-MM-dd}: {report.Customers} customers, revenue {report.Revenue:N0}; the top 20% of customers bring {report.Top20PercentRevenueShare:P0} of it"));
        Console.WriteLine($"  {"segment",-20} {"customers",9} {"revenue",8} {"avg order",10} {"median days since last",23}");
        foreach (var s in report.Segments.OrderByDescending(s => s.RevenueShare))
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  {s.Name,-20} {s.Contacts,9} {s.RevenueShare,8:P0} {s.AverageOrderValue,10:N0} {s.MedianDaysSinceLastOrder,23:N0}"));
    }

    /// <summary>Bought tea in the past year, but nothing at all for 60 days: a win-back audience.</summary>
    private static async Task ShowSegmentAsync(SegmentationService.SegmentationServiceClient segmentation, Metadata auth)
    {
        var rule = new Rule
        {
            All =
            {
                new Rule { Purchases = new PurchaseCondition { Measure = PurchaseMeasure.Bought, Categories = { "tea" }, Window = new TimeWindow { LastDays = 365 } } },
                new Rule { Purchases = new PurchaseCondition { Measure = PurchaseMeasure.DaysSinceLast, Range = new NumberRange { Min = 60 } } },
            },
        };
        Segment segment;
        try
        {
            segment = await segmentation.CreateSegmentAsync(new CreateSegmentRequest
            {
                Segment = new Segment { Name = SegmentName, Description = "bought tea in the past year, nothing in the last 60 days", Rule = rule },
            }, auth);
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.Unimplemented)
        {
            Console.WriteLine("segment: not in this build (CreateSegment answered UNIMPLEMENTED)");
            return;
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.AlreadyExists)
        {
            // make run again on the same workspace: the segment is there from last time.
            var listed = await segmentation.ListSegmentsAsync(new ListSegmentsRequest { PageSize = 100 }, auth);
            segment = listed.Segments.Single(s => s.Name == SegmentName);
        }
        Console.WriteLine($"segment \"{segment.Name}\" ({segment.SegmentId}): {segment.Rule}");

        // Membership is kept materialised in the background: wait for its first evaluation.
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (segment.EvaluatedAt is null && DateTime.UtcNow < deadline)
        {
            await Task.Delay(500);
            segment = await segmentation.GetSegmentAsync(new GetSegmentRequest { SegmentId = segment.SegmentId }, auth);
        }
        Console.WriteLine(segment.EvaluatedAt is null
            ? "  not evaluated within 30 s"
            : string.Create(CultureInfo.InvariantCulture, $"  {segment.MemberCount} members (evaluated {segment.EvaluatedAt.ToDateTime():HH:mm:ss} UTC)"));
    }
}
