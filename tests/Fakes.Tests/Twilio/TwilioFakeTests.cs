using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using Crm.Fakes.Twilio;

namespace Crm.Fakes.Tests.Twilio;

/// <summary>The Twilio fake driven by a plain HttpClient over loopback.</summary>
public sealed partial class TwilioFakeTests : IAsyncLifetime
{
    private const string Kim = "+821012345678";
    private readonly FakeTwilioServer _twilio = new();
    private TwilioHttp _client = null!;

    public async Task InitializeAsync()
    {
        await _twilio.StartAsync();
        _client = new TwilioHttp(_twilio);
    }

    public async Task DisposeAsync()
    {
        _client.Dispose();
        await _twilio.DisposeAsync();
    }

    public static TheoryData<string, string, string> Bodies => new()
    {
        { "160 GSM-7 chars", new string('a', 160), "1" },
        { "161 GSM-7 chars", new string('a', 161), "2" },
        { "70 Korean chars", new string('가', 70), "1" },
        { "71 Korean chars", new string('가', 71), "2" },
        { "159 chars with one euro = 160 septets", "€" + new string('a', 158), "1" },
        { "160 chars with one euro = 161 septets", "€" + new string('a', 159), "2" },
    };

    [Theory]
    [MemberData(nameof(Bodies))]
    public async Task Creates_a_message_with_Twilio_shape_and_num_segments(string why, string body, string segments)
    {
        var reply = await _client.SmsAsync(Kim, body);

        Assert.Equal(201, reply.Status);
        Assert.Equal(segments, reply.Str("num_segments"));
        Assert.Matches(SmsSid(), reply.Str("sid"));
        Assert.Equal("queued", reply.Str("status"));
        Assert.Equal(Kim, reply.Str("to"));
        Assert.Equal("+15005550006", reply.Str("from"));
        Assert.Equal(body, reply.Str("body"));
        Assert.Equal(_twilio.AccountSid, reply.Str("account_sid"));
        Assert.Equal("outbound-api", reply.Str("direction"));
        Assert.Equal("0", reply.Str("num_media"));
        Assert.Equal(JsonValueKind.Null, reply.Json.GetProperty("error_code").ValueKind);
        Assert.Equal($"/2010-04-01/Accounts/{_twilio.AccountSid}/Messages/{reply.Str("sid")}.json", reply.Str("uri"));
        Assert.True(DateTimeOffset.TryParseExact(
            reply.Str("date_created"), "ddd, dd MMM yyyy HH:mm:ss '+0000'", CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out _),
            why);

        var request = Assert.Single(_twilio.Requests);
        Assert.True(request.AuthOk);
        Assert.Equal(body, request.Body);
        Assert.Equal(reply.Str("sid"), request.MessageSid);
    }

    [Fact]
    public async Task A_429_with_Retry_After_then_success()
    {
        _twilio.Enqueue(TwilioBehavior.TooManyRequests(retryAfterSeconds: 2));

        var limited = await _client.SmsAsync(Kim, "hi");
        Assert.Equal(429, limited.Status);
        Assert.Equal(TimeSpan.FromSeconds(2), limited.RetryAfter);
        Assert.Equal(20429, limited.ErrorCode);
        Assert.Equal(429, limited.Json.GetProperty("status").GetInt32());
        Assert.Equal("https://www.twilio.com/docs/errors/20429", limited.Str("more_info"));

        Assert.Equal(201, (await _client.SmsAsync(Kim, "hi")).Status);
        Assert.Single(_twilio.Messages);
    }

    [Fact]
    public async Task The_next_N_requests_fail_then_requests_succeed()
    {
        _twilio.Enqueue(TwilioBehavior.ServerError(503), times: 2);

        var statuses = new List<int>();
        for (var i = 0; i < 3; i++)
        {
            statuses.Add((await _client.SmsAsync(Kim, "hi")).Status);
        }
        Assert.Equal([503, 503, 201], statuses);
        Assert.Equal([20503, 20503, null], _twilio.Requests.Select(r => r.ErrorCode));
    }

    [Fact]
    public async Task An_unsubscribed_recipient_is_refused_with_21610_every_time_others_are_not()
    {
        _twilio.EnqueueFor(Kim, TwilioBehavior.Unsubscribed(), FakeTwilioServer.Forever);

        for (var i = 0; i < 2; i++)
        {
            var refused = await _client.SmsAsync(Kim, "hi");
            Assert.Equal(400, refused.Status);
            Assert.Equal(21610, refused.ErrorCode);
            Assert.Equal("Attempt to send to unsubscribed recipient", refused.Str("message"));
        }
        Assert.Equal(201, (await _client.SmsAsync("+821098765432", "hi")).Status);
    }

    [Fact]
    public async Task Wrong_credentials_get_401_with_code_20003_and_create_nothing()
    {
        var reply = await _client.SendAsync(
            [new("To", Kim), new("From", "+15005550006"), new("Body", "hi")], authToken: "wrong");

        Assert.Equal(401, reply.Status);
        Assert.Equal(20003, reply.ErrorCode);
        Assert.Equal("Authenticate", reply.Str("message"));
        Assert.False(Assert.Single(_twilio.Requests).AuthOk);
        Assert.Empty(_twilio.Messages);
    }

    [Fact]
    public async Task Validation_errors_use_Twilio_codes()
    {
        Assert.Equal(21604, (await _client.SendAsync([new("From", "+15005550006"), new("Body", "hi")])).ErrorCode);
        var notE164 = await _client.SmsAsync("010-1234-5678", "hi");
        Assert.Equal(400, notE164.Status);
        Assert.Equal(21211, notE164.ErrorCode);
        Assert.Equal(21603, (await _client.SendAsync([new("To", Kim), new("Body", "hi")])).ErrorCode);
        Assert.Equal(21602, (await _client.SmsAsync(Kim, "")).ErrorCode);
        Assert.Equal(21617, (await _client.SmsAsync(Kim, new string('a', 1601))).ErrorCode);
        Assert.Equal(21609, (await _client.SmsAsync(Kim, "hi", statusCallback: "not a url")).ErrorCode);
        Assert.Empty(_twilio.Messages);
    }

    [Fact]
    public async Task A_Messaging_Service_send_is_accepted_with_num_segments_0_like_Twilio()
    {
        var reply = await _client.SendAsync(
            [new("To", Kim), new("MessagingServiceSid", "MG" + new string('a', 32)), new("Body", new string('a', 200))]);

        Assert.Equal(201, reply.Status);
        Assert.Equal("accepted", reply.Str("status"));
        Assert.Equal("0", reply.Str("num_segments"));
        Assert.Equal(JsonValueKind.Null, reply.Json.GetProperty("from").ValueKind);
        Assert.Equal(2, Assert.Single(_twilio.Messages).Segments);  // what it will really cost
    }

    [Fact]
    public async Task A_delay_longer_than_the_client_timeout_still_creates_the_message()
    {
        _twilio.Enqueue(TwilioBehavior.Delay(TimeSpan.FromSeconds(1.5)));
        using var impatient = new TwilioHttp(_twilio, timeout: TimeSpan.FromMilliseconds(300));

        await Assert.ThrowsAsync<TaskCanceledException>(() => impatient.SmsAsync(Kim, "hi"));

        // The real API may have sent it anyway: a retry without idempotency would double-send.
        Assert.Single(await _twilio.WaitForMessagesAsync(1, TimeSpan.FromSeconds(5)));
        var request = Assert.Single(await _twilio.WaitForRequestsAsync(1, TimeSpan.FromSeconds(5)));
        Assert.Equal(201, request.ResponseStatus);
        Assert.True(request.ClientAborted);
    }

    [Fact]
    public async Task A_dropped_connection_is_an_HttpRequestException()
    {
        _twilio.Enqueue(TwilioBehavior.DropConnection());

        await Assert.ThrowsAsync<HttpRequestException>(() => _client.SmsAsync(Kim, "hi"));
        Assert.Empty(_twilio.Messages);
    }

    [Fact]
    public async Task A_created_message_can_be_fetched()
    {
        var sid = (await _client.SmsAsync(Kim, "hi")).Str("sid");
        using var http = new HttpClient();
        http.DefaultRequestHeaders.Authorization = new(
            "Basic", Convert.ToBase64String(System.Text.Encoding.UTF8.GetBytes($"{_twilio.AccountSid}:{_twilio.AuthToken}")));

        using var found = await http.GetAsync(new Uri(_twilio.BaseUri, $"2010-04-01/Accounts/{_twilio.AccountSid}/Messages/{sid}.json"));
        using var missing = await http.GetAsync(new Uri(_twilio.BaseUri, $"2010-04-01/Accounts/{_twilio.AccountSid}/Messages/SMnope.json"));

        Assert.Equal(200, (int)found.StatusCode);
        Assert.Contains(sid!, await found.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.Equal(404, (int)missing.StatusCode);
    }

    [Fact]
    public void Pacing_helpers_measure_arrival_spacing()
    {
        TwilioRequest At(double seconds) => new()
        {
            Sequence = 0, ReceivedAt = default, Timestamp = 0, SinceStart = TimeSpan.FromSeconds(seconds),
            Method = "POST", Path = "/", AuthOk = true, Form = [], ResponseStatus = 201,
        };

        TwilioRequest[] paced = [At(0), At(1.0), At(2.5)];
        TwilioRequest[] burst = [At(0), At(0.2), At(0.9), At(3)];

        Assert.Equal(1, paced.MaxInWindow(TimeSpan.FromSeconds(1)));
        Assert.Equal(TimeSpan.FromSeconds(1), paced.MinInterval());
        Assert.Equal(3, burst.MaxInWindow(TimeSpan.FromSeconds(1)));
    }

    [GeneratedRegex("^SM[0-9a-f]{32}$")]
    private static partial Regex SmsSid();
}
