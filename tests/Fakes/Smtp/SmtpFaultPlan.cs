namespace Crm.Fakes.Smtp;

/// <summary>What to do instead of the normal reply: answer <see cref="Reply"/>, or hang when it is null.</summary>
internal sealed record SmtpFaultAction(SmtpReply? Reply)
{
    public bool Hang => Reply is null;
}

/// <summary>
/// The failures a test programmed, consumed first-in first-out. A rule either targets one recipient
/// (matched case-insensitively) or the next messages whatever their recipients.
/// </summary>
internal sealed class SmtpFaultPlan
{
    private readonly Lock _gate = new();
    private readonly List<Rule> _rules = [];

    public void Add(SmtpStage stage, SmtpReply? reply, string? recipient, int times)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(times);
        lock (_gate)
        {
            _rules.Add(new Rule(stage, reply, recipient, times));
        }
    }

    public void Clear()
    {
        lock (_gate)
        {
            _rules.Clear();
        }
    }

    /// <summary>Takes one use of the oldest rule for this stage that targets no particular recipient.</summary>
    public SmtpFaultAction? TakeGeneral(SmtpStage stage) => Take(r => r.Stage == stage && r.Recipient is null);

    /// <summary>Takes one use of the oldest rule for this stage that targets one of <paramref name="recipients"/>.</summary>
    public SmtpFaultAction? TakeForRecipients(SmtpStage stage, IReadOnlyCollection<string> recipients) =>
        Take(r => r.Stage == stage && r.Recipient is not null
            && recipients.Contains(r.Recipient, StringComparer.OrdinalIgnoreCase));

    private SmtpFaultAction? Take(Func<Rule, bool> matches)
    {
        lock (_gate)
        {
            var rule = _rules.FirstOrDefault(matches);
            if (rule is null)
            {
                return null;
            }
            if (rule.Remaining != int.MaxValue && --rule.Remaining == 0)
            {
                _rules.Remove(rule);
            }
            return new SmtpFaultAction(rule.Reply);
        }
    }

    private sealed class Rule(SmtpStage stage, SmtpReply? reply, string? recipient, int remaining)
    {
        public SmtpStage Stage { get; } = stage;
        public SmtpReply? Reply { get; } = reply;
        public string? Recipient { get; } = recipient;
        public int Remaining { get; set; } = remaining;  // int.MaxValue: forever
    }
}
