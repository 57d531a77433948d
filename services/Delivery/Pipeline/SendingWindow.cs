using System.Globalization;

namespace Crm.Delivery.Pipeline;

/// <summary>When a message may go out, in the recipient's local time.</summary>
public static class SendingWindow
{
    /// <summary>Korea: advertising between 21:00 and 08:00 needs the recipient's separate night-time consent.</summary>
    public static readonly (TimeOnly Start, TimeOnly End) KoreanNight = (new TimeOnly(21, 0), new TimeOnly(8, 0));

    /// <returns>null when the message may go now; otherwise the earliest time it may, and why.</returns>
    public static (DateTimeOffset At, string Reason)? NextAllowed(DateTimeOffset now, TimeZoneInfo zone,
        (TimeOnly Start, TimeOnly End)? quietHours, bool nightAdvertisingRule)
    {
        var at = now;
        string? reason = null;
        // Two windows may chain (quiet hours ending inside the night window): a few rounds settle it.
        for (var round = 0; round < 4; round++)
        {
            var local = TimeZoneInfo.ConvertTime(at, zone);
            var time = TimeOnly.FromDateTime(local.DateTime);
            if (quietHours is { } q && Inside(time, q))
            {
                at = NextLocal(local, q.End, zone);
                reason = string.Create(CultureInfo.InvariantCulture, $"quiet hours {q.Start:HH\\:mm}-{q.End:HH\\:mm} in {zone.Id}");
            }
            else if (nightAdvertisingRule && Inside(time, KoreanNight))
            {
                at = NextLocal(local, KoreanNight.End, zone);
                reason = "advertising between 21:00 and 08:00 needs night-time consent";
            }
            else
            {
                break;
            }
        }
        return at == now ? null : (at, reason!);
    }

    public static bool Inside(TimeOnly t, (TimeOnly Start, TimeOnly End) w) =>
        w.Start <= w.End ? t >= w.Start && t < w.End : t >= w.Start || t < w.End;

    /// <summary>The next time the local clock shows <paramref name="time"/>.</summary>
    private static DateTimeOffset NextLocal(DateTimeOffset local, TimeOnly time, TimeZoneInfo zone)
    {
        var candidate = local.Date + time.ToTimeSpan();
        if (candidate <= local.DateTime) candidate = candidate.AddDays(1);
        while (zone.IsInvalidTime(candidate)) candidate = candidate.AddMinutes(30); // skipped by a clock change
        return new DateTimeOffset(candidate, zone.GetUtcOffset(candidate));
    }

    public static bool TryParseWindow(string? start, string? end, out (TimeOnly Start, TimeOnly End) window)
    {
        window = default;
        if (!TimeOnly.TryParseExact(start, "HH:mm", CultureInfo.InvariantCulture, DateTimeStyles.None, out var s)) return false;
        if (!TimeOnly.TryParseExact(end, "HH:mm", CultureInfo.InvariantCulture, DateTimeStyles.None, out var e)) return false;
        window = (s, e);
        return true;
    }
}
