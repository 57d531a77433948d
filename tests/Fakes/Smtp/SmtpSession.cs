using System.Globalization;
using System.Text;

namespace Crm.Fakes.Smtp;

/// <summary>
/// One SMTP connection (RFC 5321 server side): greeting, EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT.
/// Replies are written and flushed one command at a time, which is valid under PIPELINING: the client
/// may send a batch, it still gets the replies in order.
/// </summary>
internal sealed class SmtpSession
{
    private const int MaxCommandLine = 4096;         // RFC says 512; SMTPUTF8 addresses and params need slack
    private const int MaxDataLine = 1024 * 1024;     // RFC says 1000; accept sloppy clients, record what they sent

    private readonly Stream _stream;
    private readonly SmtpLineReader _reader;
    private readonly FakeSmtpServer _server;
    private readonly FakeSmtpServerOptions _options;
    private readonly CancellationToken _stopping;
    private string? _clientName;
    private Transaction? _transaction;

    public SmtpSession(Stream stream, FakeSmtpServer server, FakeSmtpServerOptions options, CancellationToken stopping)
    {
        _stream = stream;
        _reader = new SmtpLineReader(stream);
        _server = server;
        _options = options;
        _stopping = stopping;
    }

    public async Task RunAsync()
    {
        try
        {
            if (!await GreetAsync().ConfigureAwait(false))
            {
                return;
            }
            while (true)
            {
                var line = await ReadLineAsync(MaxCommandLine).ConfigureAwait(false);
                if (line is null || !await HandleCommandAsync(Encoding.UTF8.GetString(line)).ConfigureAwait(false))
                {
                    return;
                }
            }
        }
        catch (SmtpLineTooLongException)
        {
            await TryReplyAsync(500, "5.5.2 Line too long").ConfigureAwait(false);
        }
        catch (IdleTimeoutException)
        {
            await TryReplyAsync(421, "4.4.2 Idle timeout, closing connection").ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException)
        {
            // Client went away or the server is stopping: nothing more to say.
        }
    }

    private async Task<bool> GreetAsync()
    {
        var fault = _server.Faults.TakeGeneral(SmtpStage.Greeting);
        if (fault is null)
        {
            await ReplyAsync(220, $"{_options.HostName} ESMTP Crm.Fakes ready").ConfigureAwait(false);
            return true;
        }
        _server.RecordFault(SmtpStage.Greeting, fault.Reply, null, []);
        await ServeFaultAsync(fault).ConfigureAwait(false);
        return false;
    }

    /// <returns>false when the connection must be closed.</returns>
    private async Task<bool> HandleCommandAsync(string line)
    {
        var space = line.IndexOf(' ', StringComparison.Ordinal);
        var verb = (space < 0 ? line : line[..space]).ToUpperInvariant();
        var argument = space < 0 ? "" : line[(space + 1)..].Trim();
        switch (verb)
        {
            case "EHLO":
                return await EhloAsync(argument).ConfigureAwait(false);
            case "HELO":
                return await HeloAsync(argument).ConfigureAwait(false);
            case "MAIL":
                return await MailAsync(argument).ConfigureAwait(false);
            case "RCPT":
                return await RcptAsync(argument).ConfigureAwait(false);
            case "DATA":
                return await DataAsync().ConfigureAwait(false);
            case "RSET":
                _transaction = null;
                return await ReplyAsync(250, "2.0.0 Ok").ConfigureAwait(false);
            case "NOOP":
                return await ReplyAsync(250, "2.0.0 Ok").ConfigureAwait(false);
            case "QUIT":
                await ReplyAsync(221, "2.0.0 Bye").ConfigureAwait(false);
                return false;
            case "VRFY":
                return await ReplyAsync(252, "2.1.5 Cannot VRFY user, but will accept message").ConfigureAwait(false);
            case "STARTTLS" or "AUTH" or "BDAT":
                // Not advertised in EHLO, so a well-behaved client never sends these.
                return await ReplyAsync(502, "5.5.1 Command not implemented").ConfigureAwait(false);
            default:
                return await ReplyAsync(500, "5.5.2 Command unrecognized").ConfigureAwait(false);
        }
    }

    private async Task<bool> EhloAsync(string domain)
    {
        if (domain.Length == 0)
        {
            return await ReplyAsync(501, "5.5.4 Syntax: EHLO hostname").ConfigureAwait(false);
        }
        _clientName = domain;
        _transaction = null;  // EHLO implies RSET (RFC 5321 §4.1.4)
        await ReplyLinesAsync(
            250,
            $"{_options.HostName} Hello {domain}",
            string.Create(CultureInfo.InvariantCulture, $"SIZE {_options.MaxMessageSize}"),
            "8BITMIME",
            "SMTPUTF8",
            "PIPELINING",
            "ENHANCEDSTATUSCODES").ConfigureAwait(false);
        return true;
    }

    private async Task<bool> HeloAsync(string domain)
    {
        if (domain.Length == 0)
        {
            return await ReplyAsync(501, "5.5.4 Syntax: HELO hostname").ConfigureAwait(false);
        }
        _clientName = domain;
        _transaction = null;
        return await ReplyAsync(250, $"{_options.HostName} Hello {domain}").ConfigureAwait(false);
    }

    private async Task<bool> MailAsync(string argument)
    {
        if (_clientName is null)
        {
            return await ReplyAsync(503, "5.5.1 Send EHLO/HELO first").ConfigureAwait(false);
        }
        if (_transaction is not null)
        {
            return await ReplyAsync(503, "5.5.1 Nested MAIL command").ConfigureAwait(false);
        }
        if (!SmtpPath.TryParse(argument, "FROM:", out var from, out var parameters))
        {
            return await ReplyAsync(501, "5.5.4 Syntax: MAIL FROM:<address>").ConfigureAwait(false);
        }

        var transaction = new Transaction(from);
        foreach (var parameter in parameters)
        {
            var error = transaction.ApplyParameter(parameter, _options.MaxMessageSize);
            if (error is not null)
            {
                return await ReplyAsync(error.Code, error.Text).ConfigureAwait(false);
            }
        }
        if (!transaction.SmtpUtf8 && !SmtpPath.IsAscii(from))
        {
            return await ReplyAsync(553, "5.6.7 Non-ASCII address requires SMTPUTF8").ConfigureAwait(false);
        }
        _transaction = transaction;
        return await ReplyAsync(250, "2.1.0 Ok").ConfigureAwait(false);
    }

    private async Task<bool> RcptAsync(string argument)
    {
        if (_transaction is null)
        {
            return await ReplyAsync(503, "5.5.1 Need MAIL before RCPT").ConfigureAwait(false);
        }
        if (!SmtpPath.TryParse(argument, "TO:", out var recipient, out _) || recipient.Length == 0)
        {
            return await ReplyAsync(501, "5.5.4 Syntax: RCPT TO:<address>").ConfigureAwait(false);
        }
        if (!_transaction.SmtpUtf8 && !SmtpPath.IsAscii(recipient))
        {
            return await ReplyAsync(553, "5.6.7 Non-ASCII address requires SMTPUTF8").ConfigureAwait(false);
        }
        if (_transaction.Recipients.Count >= _options.MaxRecipients)
        {
            return await ReplyAsync(452, "4.5.3 Too many recipients").ConfigureAwait(false);
        }

        var fault = _server.Faults.TakeForRecipients(SmtpStage.Rcpt, [recipient]) ?? _transaction.TakeGeneralRcptFault(_server.Faults);
        if (fault is not null)
        {
            _server.RecordFault(SmtpStage.Rcpt, fault.Reply, _transaction.From, [recipient]);
            return await ServeFaultAsync(fault).ConfigureAwait(false);
        }
        _transaction.Recipients.Add(recipient);
        return await ReplyAsync(250, "2.1.5 Ok").ConfigureAwait(false);
    }

    private async Task<bool> DataAsync()
    {
        if (_transaction is null)
        {
            return await ReplyAsync(503, "5.5.1 Need MAIL command").ConfigureAwait(false);
        }
        if (_transaction.Recipients.Count == 0)
        {
            return await ReplyAsync(554, "5.5.1 No valid recipients").ConfigureAwait(false);
        }
        await ReplyAsync(354, "End data with <CR><LF>.<CR><LF>").ConfigureAwait(false);

        var transaction = _transaction;
        _transaction = null;  // whatever happens next, the transaction is over
        var data = await ReadDataAsync().ConfigureAwait(false);
        if (data is null)
        {
            return false;  // connection closed mid-DATA: nothing is delivered
        }
        if (data.Length > _options.MaxMessageSize)
        {
            return await ReplyAsync(552, "5.3.4 Message size exceeds fixed maximum message size").ConfigureAwait(false);
        }

        var fault = _server.Faults.TakeForRecipients(SmtpStage.DataEnd, transaction.Recipients)
            ?? _server.Faults.TakeGeneral(SmtpStage.DataEnd);
        if (fault is not null)
        {
            _server.RecordFault(SmtpStage.DataEnd, fault.Reply, transaction.From, [.. transaction.Recipients]);
            return await ServeFaultAsync(fault).ConfigureAwait(false);
        }

        var queueId = Guid.NewGuid().ToString("N")[..12].ToUpperInvariant();
        _server.RecordMessage(new ReceivedEmail(
            queueId, DateTimeOffset.UtcNow, _clientName ?? "", transaction.From, [.. transaction.Recipients],
            transaction.SmtpUtf8, transaction.BodyType, data));
        return await ReplyAsync(250, $"2.0.0 Ok: queued as {queueId}").ConfigureAwait(false);
    }

    /// <summary>Reads DATA up to the lone "." line, undoing dot-stuffing (RFC 5321 §4.5.2).</summary>
    /// <returns>The bytes, or null if the connection closed first. Oversized data is read to the end
    /// (so the dialogue stays in sync) but only MaxMessageSize + 1 bytes are kept.</returns>
    private async Task<byte[]?> ReadDataAsync()
    {
        using var data = new MemoryStream();
        var keepLimit = _options.MaxMessageSize + 1;
        while (true)
        {
            var line = await ReadLineAsync(MaxDataLine).ConfigureAwait(false);
            if (line is null)
            {
                return null;
            }
            if (line is [(byte)'.'])
            {
                return data.ToArray();
            }
            var content = line is [(byte)'.', ..] ? line.AsSpan(1) : line.AsSpan();
            if (data.Length < keepLimit)
            {
                data.Write(content);
                data.Write("\r\n"u8);
            }
        }
    }

    /// <returns>false: the connection must be closed (after a hang, or when the fault is a 421).</returns>
    private async Task<bool> ServeFaultAsync(SmtpFaultAction fault)
    {
        if (fault.Hang)
        {
            await HangAsync().ConfigureAwait(false);
            return false;
        }
        await ReplyAsync(fault.Reply!.Code, fault.Reply.Text).ConfigureAwait(false);
        // 421 means "closing transmission channel" (RFC 5321 §3.8); so does a failed greeting.
        return fault.Reply.Code != 421;
    }

    /// <summary>
    /// Never answers: swallows whatever the client sends until it gives up and disconnects (or the
    /// server stops), which is what a client timeout test needs to observe.
    /// </summary>
    private async Task HangAsync()
    {
        var sink = new byte[4096];
        while (await _stream.ReadAsync(sink, _stopping).ConfigureAwait(false) > 0)
        {
        }
    }

    private async Task<byte[]?> ReadLineAsync(int maxLength)
    {
        using var idle = CancellationTokenSource.CreateLinkedTokenSource(_stopping);
        idle.CancelAfter(_options.IdleTimeout);
        try
        {
            return await _reader.ReadLineAsync(maxLength, idle.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!_stopping.IsCancellationRequested)
        {
            throw new IdleTimeoutException();
        }
    }

    private Task<bool> ReplyAsync(int code, string text) => ReplyLinesAsync(code, text);

    /// <summary>Writes a (multi-line: "250-a", "250 b") reply and flushes it.</summary>
    private async Task<bool> ReplyLinesAsync(int code, params string[] lines)
    {
        var reply = new StringBuilder();
        for (var i = 0; i < lines.Length; i++)
        {
            var separator = i == lines.Length - 1 ? ' ' : '-';
            reply.Append(CultureInfo.InvariantCulture, $"{code}{separator}{lines[i]}\r\n");
        }
        await _stream.WriteAsync(Encoding.UTF8.GetBytes(reply.ToString()), _stopping).ConfigureAwait(false);
        await _stream.FlushAsync(_stopping).ConfigureAwait(false);
        return true;
    }

    private async Task TryReplyAsync(int code, string text)
    {
        try
        {
            await ReplyAsync(code, text).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException)
        {
            // The client is already gone.
        }
    }

    private sealed class IdleTimeoutException : Exception;

    /// <summary>State of one MAIL ... DATA transaction.</summary>
    private sealed class Transaction(string from)
    {
        private bool _generalRcptFaultTaken;
        private SmtpFaultAction? _generalRcptFault;

        public string From { get; } = from;
        public List<string> Recipients { get; } = [];
        public bool SmtpUtf8 { get; private set; }
        public string? BodyType { get; private set; }

        /// <returns>An error reply for an unacceptable MAIL parameter, or null.</returns>
        public SmtpReply? ApplyParameter(string parameter, long maxSize)
        {
            var equals = parameter.IndexOf('=', StringComparison.Ordinal);
            var name = (equals < 0 ? parameter : parameter[..equals]).ToUpperInvariant();
            var value = equals < 0 ? "" : parameter[(equals + 1)..];
            switch (name)
            {
                case "SMTPUTF8":
                    SmtpUtf8 = true;
                    return null;
                case "BODY" when value.ToUpperInvariant() is "7BIT" or "8BITMIME":
                    BodyType = value.ToUpperInvariant();
                    return null;
                case "SIZE" when long.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var size):
                    return size > maxSize ? new SmtpReply(552, "5.3.4 Message size exceeds fixed limit") : null;
                default:
                    return new SmtpReply(555, $"5.5.4 Unsupported parameter {parameter}");
            }
        }

        /// <summary>
        /// "Fail the next N messages at RCPT" counts messages, not RCPT commands: the first RCPT of the
        /// transaction takes (at most) one use and every recipient of that transaction gets the same answer.
        /// </summary>
        public SmtpFaultAction? TakeGeneralRcptFault(SmtpFaultPlan plan)
        {
            if (!_generalRcptFaultTaken)
            {
                _generalRcptFaultTaken = true;
                _generalRcptFault = plan.TakeGeneral(SmtpStage.Rcpt);
            }
            return _generalRcptFault;
        }
    }
}
