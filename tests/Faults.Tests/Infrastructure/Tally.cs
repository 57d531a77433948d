namespace Crm.Faults.Tests.Infrastructure;

/// <summary>
/// What a run of N messages came to, counted where it matters: at the provider (the Twilio fake's requests,
/// by the idempotency key in each body), in Delivery's database (each message's outcome) and on the bus
/// (the outcome events the test received).
/// </summary>
public sealed record Tally(
    int Expected,
    int Messages,
    int Sent,
    int Unconfirmed,
    int OtherFailed,
    int Suppressed,
    int Unfinished,
    int ProviderUnique,
    int ProviderDuplicates,
    int ProviderLost,
    int UnconfirmedThatReachedProvider,
    int SentWithoutProviderCall,
    int Unannounced,
    int AnnouncedOtherThanStored)
{
    public static async Task<Tally> CountAsync(DeliveryRig rig, string tenant, string run, int expected)
    {
        var calls = rig.ProviderCallsByKey(run);
        var stored = await rig.MessagesAsync(tenant);
        int Calls(string key) => calls.GetValueOrDefault(key);
        bool IsUnconfirmed(DeliveryRig.StoredMessage m) => m.Status == "failed" && m.Reason.StartsWith("unconfirmed:", StringComparison.Ordinal);
        return new Tally(
            expected,
            stored.Count,
            stored.Count(m => m.Status == "sent"),
            stored.Count(IsUnconfirmed),
            stored.Count(m => m.Status == "failed" && !IsUnconfirmed(m)),
            stored.Count(m => m.Status == "suppressed"),
            stored.Count(m => m.Status is "accepted" or "deferred" or "sending"),
            calls.Count,
            calls.Values.Sum(n => n - 1),
            Enumerable.Range(0, expected).Count(i => Calls($"{run}-{i:D5}") == 0),
            stored.Count(m => IsUnconfirmed(m) && Calls(m.IdempotencyKey) > 0),
            stored.Count(m => m.Status == "sent" && Calls(m.IdempotencyKey) == 0),
            stored.Count(m => rig.Outcomes.KindsOf(m.MessageId).Count == 0),
            stored.Count(m => rig.Outcomes.KindsOf(m.MessageId) is { Count: > 0 } kinds && !(kinds.Count == 1 && kinds.Contains(m.Status))));
    }

    public override string ToString() =>
        $"{Expected} messages: {Messages} stored; outcomes {Sent} sent, {Unconfirmed} unconfirmed ({UnconfirmedThatReachedProvider} of them at the provider), " +
        $"{OtherFailed} failed otherwise, {Suppressed} suppressed, {Unfinished} unfinished; provider: {ProviderUnique} unique, " +
        $"{ProviderDuplicates} duplicated, {ProviderLost} lost; sent without a provider call {SentWithoutProviderCall}; " +
        $"events: {Unannounced} messages unannounced, {AnnouncedOtherThanStored} announced otherwise than stored";
}
