using Crm.BuildingBlocks.Data;
using Crm.BuildingBlocks.Errors;
using Crm.BuildingBlocks.Tenancy;
using Crm.Segmentation.Features.Rfm;
using Crm.Segmentation.V1;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;

namespace Crm.Segmentation.Features;

public sealed partial class SegmentationGrpcService
{
    public override async Task<RfmReport> GetRfmReport(GetRfmReportRequest request, ServerCallContext context)
    {
        var caller = context.Caller(Scope.SegmentsRead);
        var v = new Validation();
        var asOf = _time.GetUtcNow();
        if (request.AsOf is not null)
        {
            try { asOf = request.AsOf.ToDateTimeOffset(); }
            catch (InvalidOperationException) { v.Add("as_of", "is not a valid timestamp"); }
        }
        var windowDays = request.WindowDays == 0 ? _rfm.DefaultWindowDays : request.WindowDays;
        if (request.WindowDays is < 0 or > RfmLimits.MaxWindowDays) v.Add("window_days", $"must be 1 to {RfmLimits.MaxWindowDays} (0: {_rfm.DefaultWindowDays})");
        v.ThrowIfInvalid();

        var data = await _rfm.ReportAsync(caller.TenantId, asOf, windowDays, context.CancellationToken);
        var report = new RfmReport
        {
            AsOf = Timestamp.FromDateTimeOffset(data.AsOf),
            WindowDays = data.WindowDays,
            Customers = data.Customers,
            Revenue = (double)data.Revenue,
            Top20PercentRevenueShare = Share(data.TopRevenue, data.Revenue),
            Breakpoints = new RfmBreakpoints(),
        };
        report.Segments.AddRange(data.Segments.Select(s => new RfmSegmentStats
        {
            Name = s.Name,
            Contacts = s.Contacts,
            Revenue = (double)s.Revenue,
            RevenueShare = Share(s.Revenue, data.Revenue),
            AverageOrderValue = s.Orders == 0 ? 0 : (double)(s.Revenue / s.Orders),
            MedianDaysSinceLastOrder = s.MedianDaysSinceLastOrder,
        }));
        report.Breakpoints.RecencyDays.AddRange(data.RecencyBreakpoints);
        report.Breakpoints.Frequency.AddRange(data.FrequencyBreakpoints.Select(f => (double)f));
        report.Breakpoints.Monetary.AddRange(data.MonetaryBreakpoints.Select(m => (double)m));
        return report;
    }

    private static double Share(decimal part, decimal whole) => whole == 0 ? 0 : (double)(part / whole);

    public override async Task<ListRfmScoresResponse> ListRfmScores(ListRfmScoresRequest request, ServerCallContext context)
    {
        var caller = context.Caller(Scope.SegmentsRead);
        var size = PageToken.Size(request.PageSize);
        Guid? after = null, contact = null;
        if (PageToken.Decode(request.PageToken) is { } last)
        {
            if (!Guid.TryParse(last, out var id)) throw new InvalidArgumentException("page_token", "is not a token returned by a previous call");
            after = id;
        }
        if (request.ContactId.Length > 0)
        {
            if (!Guid.TryParse(request.ContactId, out var id)) throw new InvalidArgumentException("contact_id", "must be a contact id (a UUID)");
            contact = id;
        }
        var segment = request.Segment.Trim() is { Length: > 0 } s ? s : null;

        var rows = await _rfm.ListScoresAsync(caller.TenantId, after, segment, contact, size + 1, context.CancellationToken);
        var response = new ListRfmScoresResponse();
        response.Scores.AddRange(rows.Take(size).Select(r => new RfmScore
        {
            ContactId = r.ContactId.ToString(),
            RecencyDays = r.RecencyDays,
            Frequency = r.Frequency,
            Monetary = (double)r.Monetary,
            R = r.R,
            F = r.F,
            M = r.M,
            Segment = r.Segment,
            AsOf = Timestamp.FromDateTime(DateTime.SpecifyKind(r.AsOf, DateTimeKind.Utc)),
        }));
        if (rows.Count > size) response.NextPageToken = PageToken.Encode(rows[size - 1].ContactId.ToString());
        return response;
    }

    public override async Task<RfmTable> GetRfmTable(GetRfmTableRequest request, ServerCallContext context)
    {
        var caller = context.Caller(Scope.SegmentsRead);
        return (await _rfm.GetTableAsync(caller.TenantId, context.CancellationToken)).ToProto();
    }

    public override async Task<RfmTable> SetRfmTable(SetRfmTableRequest request, ServerCallContext context)
    {
        var caller = context.Caller(Scope.SegmentsWrite);
        var table = RfmSegmentTable.FromProto(request.Table);
        await _rfm.SetTableAsync(caller.TenantId, table, context.CancellationToken);
        return table.ToProto();
    }
}
