using System.Globalization;
using System.Net.Sockets;
using Crm.BuildingBlocks.Net;
using MailKit;
using MailKit.Net.Smtp;
using MailKit.Security;
using MimeKit;

namespace Crm.Delivery.Channels.Email;

/// <summary>
/// Sends email over SMTP with MailKit. Temporary refusals (4xx) and connection failures are retried inside
/// the call; a message whose content went out without a final reply is never retried (see
/// <see cref="SendOutcomeKind.Unconfirmed"/>).
/// </summary>
/// <remarks>
/// A new connection per send: it costs a TCP (and TLS, and AUTH) handshake per message, which a pooled
/// connection per account would save for bulk sends, but it needs no pool keyed by tenant, no keep-alive
/// or idle-drop handling, and a broken session never poisons the next message. Revisit if SMTP sends
/// ever dominate delivery latency.
/// </remarks>
public sealed class SmtpEmailSender : IEmailSender
{
    /// <summary>The provider account kind this sender serves.</summary>
    public const string Kind = "smtp";

    private readonly RetryPolicy _retry;
    private readonly OutboundGuard _guard;

    /// <param name="guard">Every connection goes to an address it resolved and allowed (the host is a tenant's setting).</param>
    public SmtpEmailSender(RetryPolicy retry, OutboundGuard guard)
    {
        ArgumentNullException.ThrowIfNull(retry);
        ArgumentNullException.ThrowIfNull(guard);
        _retry = retry;
        _guard = guard;
    }

    /// <returns>When Sent, <see cref="SendOutcome.ProviderMessageId"/> is the Message-Id header set on the message (without angle brackets).</returns>
    /// <exception cref="OperationCanceledException">Only when <paramref name="ct"/> was cancelled.</exception>
    public async Task<SendOutcome> SendAsync(ProviderAccountConfig account, OutgoingEmail email, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(account);
        ArgumentNullException.ThrowIfNull(email);
        var (smtp, problem) = SmtpAccount.Read(account);
        if (smtp is null)
        {
            return new SendOutcome(SendOutcomeKind.Permanent, $"SMTP account {account.AccountId} is misconfigured: {problem}", Attempts: 0);
        }
        var built = EmailMessageBuilder.Build(smtp, email);
        if (built.Message is not { } message)
        {
            return new SendOutcome(SendOutcomeKind.Permanent, built.Problem!, RecipientUnreachable: built.RecipientInvalid, Attempts: 0);
        }

        return await _retry.RunAsync(token => AttemptAsync(smtp, message, token), ct).ConfigureAwait(false);
    }

    private async Task<ProviderAttempt> AttemptAsync(SmtpAccount smtp, MimeMessage message, CancellationToken ct)
    {
        var content = new ContentProgress();
        using var client = new SmtpClient { Timeout = TimeoutMilliseconds(_retry.Options.RequestTimeout) };
        try
        {
            // Resolved and checked here, connected to the checked address; the host name still serves TLS (SNI, certificate).
            var socket = await _guard.ConnectAsync(smtp.Host, smtp.Port, ct).ConfigureAwait(false);
            await client.ConnectAsync(socket, smtp.Host, smtp.Port, smtp.Security, ct).ConfigureAwait(false);
            if (smtp.Username is not null)
            {
                await client.AuthenticateAsync(smtp.Username, smtp.Password ?? "", ct).ConfigureAwait(false);
            }
            var reply = await client.SendAsync(message, ct, content).ConfigureAwait(false);
            await QuitQuietlyAsync(client).ConfigureAwait(false);
            return ProviderAttempt.Final(new SendOutcome(SendOutcomeKind.Sent, $"accepted: {reply}", ProviderMessageId: message.MessageId));
        }
        catch (SmtpCommandException e)
        {
            return Classify(e);
        }
        catch (OutboundAddressRefusedException e)
        {
            return ProviderAttempt.Final(new SendOutcome(SendOutcomeKind.Permanent, $"SMTP host refused: {e.Message}"));
        }
        catch (AuthenticationException e)
        {
            return ProviderAttempt.Final(new SendOutcome(SendOutcomeKind.Permanent, $"SMTP authentication failed: {e.Message}"));
        }
        catch (Exception e) when (e is ServiceNotAuthenticatedException or SslHandshakeException or NotSupportedException)
        {
            // The server wants AUTH we were not configured for, TLS failed, or it lacks an extension we need
            // (STARTTLS, SMTPUTF8): the account needs fixing, retrying changes nothing.
            return ProviderAttempt.Final(new SendOutcome(SendOutcomeKind.Permanent, $"SMTP {e.GetType().Name}: {e.Message}"));
        }
        catch (Exception e) when (e is TimeoutException or IOException or SocketException or SmtpProtocolException
                                      || (e is OperationCanceledException && !ct.IsCancellationRequested))
        {
            // MailKit reports its own Timeout as TimeoutException and a dropped connection as
            // SmtpProtocolException or IOException. Once content went out after DATA, only the final reply
            // was missing: the server may have queued the message, and a retry could deliver it twice.
            return content.Started
                ? ProviderAttempt.Final(new SendOutcome(SendOutcomeKind.Unconfirmed,
                    $"no final reply after the message content was sent ({e.GetType().Name}: {e.Message}); it may have been accepted"))
                : ProviderAttempt.Retry($"SMTP connection failed ({e.GetType().Name}: {e.Message})");
        }
    }

    private static ProviderAttempt Classify(SmtpCommandException e)
    {
        var code = (int)e.StatusCode;
        var reason = string.Create(CultureInfo.InvariantCulture, $"SMTP {code} at {Stage(e.ErrorCode)}: {e.Message}");
        if (code is >= 400 and < 500)
        {
            return ProviderAttempt.Retry(reason, errorCode: code);
        }
        // 550 mailbox unavailable, 551 user not local, 553 mailbox name not allowed: the address is bad.
        // Other refusals of a recipient (552 over quota...) and any refusal of sender or content are not
        // the address's fault.
        var unreachable = e.ErrorCode == SmtpErrorCode.RecipientNotAccepted
            && e.StatusCode is SmtpStatusCode.MailboxUnavailable or SmtpStatusCode.UserNotLocalTryAlternatePath or SmtpStatusCode.MailboxNameNotAllowed;
        return ProviderAttempt.Final(new SendOutcome(SendOutcomeKind.Permanent, reason, ProviderErrorCode: code, RecipientUnreachable: unreachable));
    }

    private static string Stage(SmtpErrorCode error) => error switch
    {
        SmtpErrorCode.SenderNotAccepted => "MAIL FROM",
        SmtpErrorCode.RecipientNotAccepted => "RCPT TO",
        SmtpErrorCode.MessageNotAccepted => "end of DATA",
        _ => "connect or command",
    };

    // The message was accepted; a failed QUIT must not turn that into a failure (nor must the caller's cancellation).
    private static async Task QuitQuietlyAsync(SmtpClient client)
    {
        try
        {
            await client.DisconnectAsync(quit: true, CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or SocketException or TimeoutException or SmtpProtocolException or SmtpCommandException)
        {
        }
    }

    private static int TimeoutMilliseconds(TimeSpan timeout) =>
        timeout == Timeout.InfiniteTimeSpan ? Timeout.Infinite : (int)Math.Clamp(timeout.TotalMilliseconds, 1, int.MaxValue);

    /// <summary>
    /// MailKit reports progress only while writing the message content, i.e. after the server said 354 to
    /// DATA: before that nothing of the message was handed over and a retry is safe.
    /// </summary>
    private sealed class ContentProgress : ITransferProgress
    {
        private int _started;

        public bool Started => Volatile.Read(ref _started) == 1;

        public void Report(long bytesTransferred, long totalSize) => Volatile.Write(ref _started, 1);

        public void Report(long bytesTransferred) => Volatile.Write(ref _started, 1);
    }
}
