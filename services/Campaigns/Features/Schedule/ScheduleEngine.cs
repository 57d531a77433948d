using Cronos;
using Crm.BuildingBlocks.Data;
using Crm.BuildingBlocks.Errors;
using Dapper;

namespace Crm.Campaigns.Features.Schedule;

/// <summary>
/// Schedules: now, at a time, at a local time in each contact's own zone, recurring (cron in a zone, Cronos).
/// ScheduleCampaign stores the schedule and the instant its next run is due (campaigns.next_run_at, status
/// scheduled); <see cref="ScheduleWorker"/> claims due campaigns with FOR UPDATE SKIP LOCKED and creates their
/// runs, which the run worker snapshots and fans out. A local-time campaign's one run is due when the first
/// zone on Earth (UTC+14) reaches the local time; <see cref="LocalSendTimes"/> then gives each recipient the
/// instant of that local time in their zone, which Delivery holds the message until.
/// </summary>
public sealed class ScheduleEngine(TenantDb db, TimeProvider time)
{
    /// <summary>The earliest offset of any zone (Kiribati's Line Islands): a local time is reached there first.</summary>
    public static readonly TimeSpan EarliestOffset = TimeSpan.FromHours(14);

    public sealed record ScheduleRow(string ScheduleKind, DateTime? SendAt, DateOnly? LocalDate, TimeOnly? LocalTime, string PastZonePolicy,
        string? Cron, string? TimeZone, DateTime? ScheduleEndsAt);

    /// <summary>When the next run is due after <paramref name="after"/>; null when the schedule has no more runs.</summary>
    public static DateTimeOffset? NextRunAt(ScheduleRow s, DateTimeOffset now, DateTimeOffset? after = null) => s.ScheduleKind switch
    {
        "at" => s.SendAt is { } at && after is null ? Max(Utc(at), now) : null,
        "local_time" => after is null && s.LocalDate is { } d && s.LocalTime is { } t
            ? Max(new DateTimeOffset(d.ToDateTime(t), TimeSpan.Zero) - EarliestOffset, now)
            : null,
        "recurring" => NextOccurrence(s, after ?? now),
        _ => after is null ? now : null,
    };

    private static DateTimeOffset? NextOccurrence(ScheduleRow s, DateTimeOffset after)
    {
        var next = CronExpression.Parse(s.Cron!).GetNextOccurrence(after, TimeZoneInfo.FindSystemTimeZoneById(s.TimeZone!));
        return next is { } n && (s.ScheduleEndsAt is null || n <= Utc(s.ScheduleEndsAt.Value)) ? n.ToUniversalTime() : null;
    }

    private static DateTimeOffset Utc(DateTime t) => new(DateTime.SpecifyKind(t, DateTimeKind.Utc));
    private static DateTimeOffset Max(DateTimeOffset a, DateTimeOffset b) => a > b ? a : b;

    /// <summary>Field violations of a schedule (field names under <paramref name="prefix"/>).</summary>
    public static void Validate(Validation v, V1.Schedule s, string prefix, DateTimeOffset now)
    {
        switch (s.Kind)
        {
            case V1.ScheduleKind.Unspecified or V1.ScheduleKind.Now:
                break;
            case V1.ScheduleKind.At:
                if (s.SendTime is null) v.Add(prefix + ".send_time", "is required for AT");
                else if (s.SendTime.ToDateTimeOffset() < now.AddMinutes(-1)) v.Add(prefix + ".send_time", "is in the past");
                break;
            case V1.ScheduleKind.LocalTime:
                if (!DateOnly.TryParseExact(s.LocalDate, "yyyy-MM-dd", out var date)) v.Add(prefix + ".local_date", "must be YYYY-MM-DD");
                if (!TimeOnly.TryParseExact(s.LocalTime, "HH:mm", out var clock)) v.Add(prefix + ".local_time", "must be HH:mm");
                else if (date != default && new DateTimeOffset(date.ToDateTime(clock), TimeSpan.Zero) + TimeSpan.FromHours(12) < now)
                    v.Add(prefix + ".local_date", "has passed in every time zone");
                break;
            case V1.ScheduleKind.Recurring:
                CronExpression? cron = null;
                try { cron = CronExpression.Parse(s.Cron); }
                catch (Exception e) when (e is CronFormatException or ArgumentException) { v.Add(prefix + ".cron", "must be a five-field cron expression: " + e.Message); }
                if (!TryZone(s.TimeZone, out var zone)) v.Add(prefix + ".time_zone", "must be an IANA time zone, e.g. Asia/Seoul");
                else if (cron is not null && s.EndTime is not null && !(cron.GetNextOccurrence(now, zone!) <= s.EndTime.ToDateTimeOffset()))
                    v.Add(prefix + ".end_time", "leaves no occurrence");
                break;
            default:
                v.Add(prefix + ".kind", "must be NOW, AT, LOCAL_TIME or RECURRING");
                break;
        }
    }

    private static bool TryZone(string id, out TimeZoneInfo? zone)
    {
        zone = null;
        if (string.IsNullOrEmpty(id)) return false;
        try { zone = TimeZoneInfo.FindSystemTimeZoneById(id); return true; }
        catch (Exception e) when (e is TimeZoneNotFoundException or InvalidTimeZoneException) { return false; }
    }

    private const string ScheduleColumns =
        "schedule_kind, send_at, local_date, local_time, past_zone_policy, cron, time_zone, schedule_ends_at";

    /// <summary>
    /// Schedules the campaign: with <paramref name="replacement"/> its schedule is replaced first. A campaign
    /// that is running, paused, cancelled or archived cannot be scheduled.
    /// </summary>
    public async Task<DateTimeOffset?> ScheduleAsync(string tenant, Guid campaignId, V1.Schedule? replacement, CancellationToken ct)
    {
        var now = time.GetUtcNow();
        if (replacement is not null)
        {
            var v = new Validation();
            Validate(v, replacement, "schedule", now);
            v.ThrowIfInvalid();
        }
        await using var scope = await db.BeginAsync(tenant, ct);
        var status = await scope.Connection.ExecuteScalarAsync<string?>(new CommandDefinition(
            "SELECT status FROM campaigns WHERE tenant_id = @tenant AND campaign_id = @campaignId FOR UPDATE",
            new { tenant, campaignId }, scope.Transaction, cancellationToken: ct))
            ?? throw new NotFoundException($"Campaign {campaignId} not found.");
        if (status is not ("draft" or "scheduled" or "completed"))
            throw new FailedPreconditionException($"Campaign {campaignId} is {status}; only a draft, scheduled or completed campaign can be scheduled.");
        if (replacement is not null)
            await scope.Connection.ExecuteAsync(new CommandDefinition($"""
                UPDATE campaigns SET ({ScheduleColumns}) = (@kind, @sendAt, @localDate::date, @localTime::time,
                                     @policy, @cron, @zone, @endsAt)
                WHERE tenant_id = @tenant AND campaign_id = @campaignId
                """, new
            {
                tenant, campaignId,
                kind = replacement.Kind switch
                {
                    V1.ScheduleKind.At => "at", V1.ScheduleKind.LocalTime => "local_time", V1.ScheduleKind.Recurring => "recurring", _ => "now",
                },
                sendAt = replacement.SendTime?.ToDateTime(),
                localDate = replacement.Kind == V1.ScheduleKind.LocalTime ? replacement.LocalDate : null,
                localTime = replacement.Kind == V1.ScheduleKind.LocalTime ? replacement.LocalTime : null,
                policy = replacement.PastZonePolicy == V1.PastZonePolicy.Skip ? "skip" : "send_now",
                cron = replacement.Kind == V1.ScheduleKind.Recurring ? replacement.Cron : null,
                zone = replacement.Kind == V1.ScheduleKind.Recurring ? replacement.TimeZone : null,
                endsAt = replacement.EndTime?.ToDateTime(),
            }, scope.Transaction, cancellationToken: ct));
        var row = await scope.Connection.QuerySingleAsync<ScheduleRow>(new CommandDefinition(
            $"SELECT {ScheduleColumns} FROM campaigns WHERE tenant_id = @tenant AND campaign_id = @campaignId",
            new { tenant, campaignId }, scope.Transaction, cancellationToken: ct));
        var next = NextRunAt(row, now) ?? throw new FailedPreconditionException($"Campaign {campaignId}'s schedule has no run left.");
        await scope.Connection.ExecuteAsync(new CommandDefinition("""
            UPDATE campaigns SET status = 'scheduled', next_run_at = @next, updated_at = @now WHERE tenant_id = @tenant AND campaign_id = @campaignId
            """, new { tenant, campaignId, next = next.UtcDateTime, now = now.UtcDateTime }, scope.Transaction, cancellationToken: ct));
        await scope.CommitAsync(ct);
        return next;
    }

    /// <summary>The campaign's schedule, status and next run as ScheduleCampaign answers them.</summary>
    public async Task<V1.Campaign> GetAsync(string tenant, Guid campaignId, CancellationToken ct)
    {
        await using var scope = await db.BeginAsync(tenant, ct);
        var c = await scope.Connection.QuerySingleAsync<(string Name, string Status, Guid? LastRunId)>(new CommandDefinition(
            "SELECT name, status, last_run_id FROM campaigns WHERE tenant_id = @tenant AND campaign_id = @campaignId",
            new { tenant, campaignId }, scope.Transaction, cancellationToken: ct));
        var s = await scope.Connection.QuerySingleAsync<ScheduleRow>(new CommandDefinition(
            $"SELECT {ScheduleColumns} FROM campaigns WHERE tenant_id = @tenant AND campaign_id = @campaignId",
            new { tenant, campaignId }, scope.Transaction, cancellationToken: ct));
        return new V1.Campaign
        {
            CampaignId = campaignId.ToString(), Name = c.Name, LastRunId = c.LastRunId?.ToString() ?? "",
            Status = c.Status == "scheduled" ? V1.CampaignStatus.Scheduled : c.Status == "running" ? V1.CampaignStatus.Running : V1.CampaignStatus.Draft,
            Schedule = new V1.Schedule
            {
                Kind = s.ScheduleKind switch
                {
                    "at" => V1.ScheduleKind.At, "local_time" => V1.ScheduleKind.LocalTime, "recurring" => V1.ScheduleKind.Recurring, _ => V1.ScheduleKind.Now,
                },
                SendTime = s.SendAt is { } at ? Google.Protobuf.WellKnownTypes.Timestamp.FromDateTime(DateTime.SpecifyKind(at, DateTimeKind.Utc)) : null,
                LocalDate = s.LocalDate?.ToString("yyyy-MM-dd", System.Globalization.CultureInfo.InvariantCulture) ?? "",
                LocalTime = s.LocalTime?.ToString("HH:mm", System.Globalization.CultureInfo.InvariantCulture) ?? "",
                PastZonePolicy = s.PastZonePolicy == "skip" ? V1.PastZonePolicy.Skip : V1.PastZonePolicy.SendNow,
                Cron = s.Cron ?? "", TimeZone = s.TimeZone ?? "",
                EndTime = s.ScheduleEndsAt is { } e ? Google.Protobuf.WellKnownTypes.Timestamp.FromDateTime(DateTime.SpecifyKind(e, DateTimeKind.Utc)) : null,
            },
        };
    }
}

public static class ScheduleRegistration
{
    public static IServiceCollection AddSchedules(this IServiceCollection services)
    {
        services.AddSingleton<ScheduleEngine>();
        services.AddSingleton<ScheduleWorker>();
        services.AddHostedService(sp => sp.GetRequiredService<ScheduleWorker>());
        return services;
    }
}
